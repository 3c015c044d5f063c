// SPDX-License-Identifier: GPL-2.0
/*
 * xsk_redirect: the built-in AF_XDP steering program of afxdp-rs.
 *
 * Every frame received on rx queue N is redirected to the AF_XDP socket
 * stored at key N of `xsks_map`. When no socket is registered for the queue
 * the frame goes on to the kernel stack (XDP_PASS), so a device keeps working
 * for regular traffic until a pod binds its sockets.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Upper bound on the queues of one device that can have a socket. */
#define XSKS_MAX_QUEUES 64

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XSKS_MAX_QUEUES);
	__type(key, int);
	__type(value, int);
} xsks_map SEC(".maps");

SEC("xdp")
int xsk_redirect(struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;

	/*
	 * The verifier inlines an XSKMAP lookup into a bounds check and a load,
	 * while bpf_redirect_map() is a call that also resets the per-CPU
	 * redirect state: on a queue without a socket (every frame of a device
	 * whose pod has not bound yet) looking up first costs the frame about
	 * nothing over XDP_PASS; on a hit it adds the inlined load only.
	 */
	if (!bpf_map_lookup_elem(&xsks_map, &queue))
		return XDP_PASS;
	return bpf_redirect_map(&xsks_map, queue, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
