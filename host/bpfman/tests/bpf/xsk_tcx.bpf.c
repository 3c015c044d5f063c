// SPDX-License-Identifier: GPL-2.0
/*
 * Test object of afxdp-bpfman's host tests: the built-in program (its
 * xsk_redirect function and xsks_map, unchanged) plus a TCX function, for
 * kernels that refuse the freplace programs bpfman attaches XDP with.
 * xsk_tcx_count counts the frames it sees in tcx_seen[0] and lets them go.
 */
#include "../../../../bpf/xsk_redirect.bpf.c"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tcx_seen SEC(".maps");

SEC("classifier")
int xsk_tcx_count(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *seen = bpf_map_lookup_elem(&tcx_seen, &key);

	if (seen)
		__sync_fetch_and_add(seen, 1);
	return 0; /* TC_ACT_OK / TCX_PASS */
}
