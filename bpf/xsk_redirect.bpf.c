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
	/*
	 * Since Linux 5.3 the low bits of the flags argument are the action
	 * returned when the map has no entry at the key: no lookup needed.
	 */
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
