#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| afxdp_fuzz_bodies::uds_message(data));
