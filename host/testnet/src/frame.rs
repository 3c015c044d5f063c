//! The test frame: 64 bytes of Ethernet + IPv4 + UDP (no FCS), the
//! smallest frame a NIC carries and so the per-packet worst case.

/// Length of [`udp_frame`]'s frame.
pub const FRAME_LEN: usize = 64;

const ETH_HLEN: usize = 14;
const IP_HLEN: usize = 20;
const UDP_HLEN: usize = 8;

/// A 64-byte UDP/IPv4 frame from 10.99.0.1:9000 to 10.99.0.2:`dst_port`,
/// with a valid IPv4 header checksum (the kernel stack drops frames without).
pub fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], dst_port: u16) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[ETH_HLEN..ETH_HLEN + IP_HLEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((FRAME_LEN - ETH_HLEN) as u16).to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&[10, 99, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 99, 0, 2]);
    let sum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut f[ETH_HLEN + IP_HLEN..];
    udp[0..2].copy_from_slice(&9000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&((FRAME_LEN - ETH_HLEN - IP_HLEN) as u16).to_be_bytes());
    // UDP checksum 0: none (allowed over IPv4).
    f[ETH_HLEN + IP_HLEN + UDP_HLEN..].fill(0xab);
    f
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_verifies_to_zero() {
        let f = udp_frame([2; 6], [4; 6], 9001);
        assert_eq!(ipv4_checksum(&f[ETH_HLEN..ETH_HLEN + IP_HLEN]), 0);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 9001);
    }
}
