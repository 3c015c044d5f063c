// The freplace program put into the dispatcher's slot: every packet passes.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("freplace/slot")
int ext_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
