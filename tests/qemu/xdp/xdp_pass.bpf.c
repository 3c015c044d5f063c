// The smallest XDP program: every packet passes. Attached with iproute2
// (`ip link set dev X xdp obj ... sec xdp`) to prove plain XDP in the guest.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
