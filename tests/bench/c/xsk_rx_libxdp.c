/*
 * The libxdp peer of afxdp-bench's receive-rate section: one AF_XDP socket
 * on one queue, made the way libxdp's users make it (xsk_umem__create,
 * xsk_socket__create loading libxdp's own redirect program in driver mode,
 * copy mode with need_wakeup), counting frames and handing each straight
 * back to the fill ring -- the loop of the kernel's xdpsock "rxdrop",
 * waiting in poll() when the rx ring is empty, as afxdp-pod-app does.
 *
 * Prints {"type":"ready"} once bound, and on SIGTERM/SIGINT the total line
 * in afxdp-pod-app's shape: {"type":"total","packets":N,"kernel":{...}}.
 *
 * Usage: xsk-rx-libxdp IFNAME QUEUE FRAMES   (FRAMES a power of two)
 */
#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <xdp/xsk.h>

#define BATCH 64

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "xsk-rx-libxdp: %s: %s\n", what, strerror(err < 0 ? -err : err));
	return 1;
}

static void kick(struct xsk_socket *xsk, struct xsk_ring_prod *fq)
{
	if (xsk_ring_prod__needs_wakeup(fq))
		recvfrom(xsk_socket__fd(xsk), NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/* Gives all frames to the fill ring once, at start. */
static int fill_all(struct xsk_ring_prod *fq, unsigned frames)
{
	__u32 idx;

	if (xsk_ring_prod__reserve(fq, frames, &idx) != frames)
		return -ENOSPC;
	for (unsigned i = 0; i < frames; i++)
		*xsk_ring_prod__fill_addr(fq, idx + i) = (__u64)i * XSK_UMEM__DEFAULT_FRAME_SIZE;
	xsk_ring_prod__submit(fq, frames);
	return 0;
}

/* Consumes up to BATCH frames and gives them back to the fill ring. */
static unsigned rx_batch(struct xsk_socket *xsk, struct xsk_ring_cons *rx,
			 struct xsk_ring_prod *fq)
{
	__u32 idx_rx, idx_fq;
	unsigned n = xsk_ring_cons__peek(rx, BATCH, &idx_rx);

	if (!n)
		return 0;
	while (xsk_ring_prod__reserve(fq, n, &idx_fq) != n)
		kick(xsk, fq);
	for (unsigned i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(rx, idx_rx + i);
		*xsk_ring_prod__fill_addr(fq, idx_fq + i) = xsk_umem__extract_addr(d->addr);
	}
	xsk_ring_prod__submit(fq, n);
	xsk_ring_cons__release(rx, n);
	return n;
}

/*
 * xsk_socket__create, waiting while the queue is still busy: a socket the
 * previous receiver closed gives its queue back from a kernel work item
 * (xp_release_deferred), so a bind right after may see EBUSY.
 */
static int create_socket(struct xsk_socket **xsk, const char *ifname, unsigned queue,
			 struct xsk_umem *umem, struct xsk_ring_cons *rx,
			 const struct xsk_socket_config *cfg)
{
	const struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};
	int err;

	for (int tries = 0; tries < 500; tries++) {
		err = xsk_socket__create(xsk, ifname, queue, umem, rx, NULL, cfg);
		if (err != -EBUSY)
			break;
		nanosleep(&pause, NULL);
	}
	return err;
}

static void print_total(struct xsk_socket *xsk, unsigned long long packets)
{
	struct xdp_statistics st = {0};
	socklen_t len = sizeof(st);

	getsockopt(xsk_socket__fd(xsk), SOL_XDP, XDP_STATISTICS, &st, &len);
	printf("{\"type\":\"total\",\"packets\":%llu,\"kernel\":{\"rx_dropped\":%llu,"
	       "\"rx_ring_full\":%llu,\"rx_fill_ring_empty\":%llu}}\n",
	       packets, (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_ring_full,
	       (unsigned long long)st.rx_fill_ring_empty_descs);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct xsk_ring_prod fq;
	struct xsk_ring_cons cq, rx;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	struct sigaction sa = {.sa_handler = on_signal};
	unsigned long long packets = 0;
	int err;

	if (argc != 4) {
		fprintf(stderr, "usage: %s IFNAME QUEUE FRAMES\n", argv[0]);
		return 2;
	}
	const char *ifname = argv[1];
	unsigned queue = (unsigned)strtoul(argv[2], NULL, 10);
	unsigned frames = (unsigned)strtoul(argv[3], NULL, 10);
	if (frames == 0 || (frames & (frames - 1)))
		return fail("FRAMES must be a power of two", EINVAL);

	size_t size = (size_t)frames * XSK_UMEM__DEFAULT_FRAME_SIZE;
	void *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return fail("mmap(umem)", errno);
	struct xsk_umem_config ucfg = {
		.fill_size = frames,
		.comp_size = XSK_RING_CONS__DEFAULT_NUM_DESCS,
		.frame_size = XSK_UMEM__DEFAULT_FRAME_SIZE,
		.frame_headroom = 0,
	};
	err = xsk_umem__create(&umem, buf, size, &fq, &cq, &ucfg);
	if (err)
		return fail("xsk_umem__create", err);
	struct xsk_socket_config scfg = {
		.rx_size = frames,
		.tx_size = XSK_RING_PROD__DEFAULT_NUM_DESCS,
		.xdp_flags = XDP_FLAGS_DRV_MODE,
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	err = create_socket(&xsk, ifname, queue, umem, &rx, &scfg);
	if (err)
		return fail("xsk_socket__create", err);
	err = fill_all(&fq, frames);
	if (err)
		return fail("filling the fill ring", err);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("{\"type\":\"ready\"}\n");
	fflush(stdout);

	struct pollfd pfd = {.fd = xsk_socket__fd(xsk), .events = POLLIN};
	while (!stop) {
		unsigned n = rx_batch(xsk, &rx, &fq);
		if (n) {
			packets += n;
			continue;
		}
		kick(xsk, &fq);
		poll(&pfd, 1, 100);
	}
	print_total(xsk, packets);
	xsk_socket__delete(xsk);
	xsk_umem__delete(umem);
	return 0;
}
