// A dispatcher shaped like bpfman's (and libxdp's): the attached XDP program
// calls a global function, a slot that an freplace (BPF_PROG_TYPE_EXT)
// program replaces. The slot alone aborts (drops) every packet, so traffic
// passing proves the freplace program runs in its place.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__attribute__((noinline)) int slot(struct xdp_md *ctx)
{
	volatile int ret = XDP_ABORTED;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

SEC("xdp")
int dispatcher(struct xdp_md *ctx)
{
	return slot(ctx);
}

char LICENSE[] SEC("license") = "GPL";
