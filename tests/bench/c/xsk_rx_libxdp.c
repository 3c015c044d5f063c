/*
 * The libxdp peer of afxdp-bench's receive-rate section: one AF_XDP socket
 * per queue (each with its own UMEM, all driven by one thread as
 * afxdp-pod-app does), made the way libxdp's users make it (xsk_umem__create,
 * xsk_socket__create loading libxdp's own redirect program in driver mode,
 * copy mode with need_wakeup), counting frames and handing them back --
 * the loop of the kernel's xdpsock "rxdrop" -- with afxdp-pod-app's ring
 * sizes and refill: FRAMES UMEM frames, fill and rx rings of FRAMES/2, the
 * frames the fill ring has no room for kept spare and the fill ring topped
 * up from them after every batch. MODE is afxdp-pod-app's --rx-mode: poll
 * (sleep in poll() when the rx ring is empty), spin (no syscall), or
 * busy-poll (SO_PREFER_BUSY_POLL, SO_BUSY_POLL 20 us, SO_BUSY_POLL_BUDGET
 * 64, and a non-blocking recvfrom() when the ring is empty).
 *
 * Prints {"type":"ready"} once bound, and on SIGTERM/SIGINT the total line
 * in afxdp-pod-app's shape: {"type":"total","packets":N,"kernel":{...}}.
 *
 * Usage: xsk-rx-libxdp IFNAME QUEUE[,QUEUE...] FRAMES [poll|spin|busy-poll]
 *        (FRAMES per queue, a power of two, at least 2)
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
#define BUSY_POLL_USECS 20
#define BUSY_POLL_BUDGET 64
#ifndef SO_PREFER_BUSY_POLL
#define SO_PREFER_BUSY_POLL 69
#endif
#ifndef SO_BUSY_POLL_BUDGET
#define SO_BUSY_POLL_BUDGET 70
#endif

enum mode { MODE_POLL, MODE_SPIN, MODE_BUSY_POLL };

/* Frames in user space's hands, not in the fill ring (a stack). */
struct spare {
	__u64 *addr;
	unsigned n;
};

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

/* Moves spare frames into the fill ring, as many as it has room for. */
static void restock_fill(struct xsk_ring_prod *fq, struct spare *sp)
{
	__u32 idx;
	unsigned n = sp->n ? xsk_prod_nb_free(fq, sp->n) : 0;

	if (n > sp->n)
		n = sp->n;
	if (!n || xsk_ring_prod__reserve(fq, n, &idx) != n)
		return;
	for (unsigned i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(fq, idx + i) = sp->addr[--sp->n];
	xsk_ring_prod__submit(fq, n);
}

/* Consumes up to BATCH frames, makes them spare, restocks the fill ring. */
static unsigned rx_batch(struct xsk_socket *xsk, struct xsk_ring_cons *rx,
			 struct xsk_ring_prod *fq, struct spare *sp)
{
	__u32 idx_rx;
	unsigned n = xsk_ring_cons__peek(rx, BATCH, &idx_rx);

	for (unsigned i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(rx, idx_rx + i);
		sp->addr[sp->n++] = xsk_umem__extract_addr(d->addr);
	}
	if (n)
		xsk_ring_cons__release(rx, n);
	restock_fill(fq, sp);
	kick(xsk, fq);
	return n;
}

static void enable_busy_poll(int fd)
{
	int one = 1, usecs = BUSY_POLL_USECS, budget = BUSY_POLL_BUDGET;

	if (setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof(usecs)) ||
	    setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof(budget)))
		fprintf(stderr, "xsk-rx-libxdp: busy poll: %s\n", strerror(errno));
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

/* One queue's socket with its own UMEM and spare frames. */
struct rxq {
	struct xsk_ring_prod fq;
	struct xsk_ring_cons cq, rx;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	struct spare sp;
};

static int open_queue(struct rxq *q, const char *ifname, unsigned queue, unsigned frames)
{
	q->sp.addr = calloc(frames, sizeof(__u64));
	if (!q->sp.addr)
		return fail("calloc", ENOMEM);
	for (unsigned i = frames; i > 0; i--)
		q->sp.addr[q->sp.n++] = (__u64)(i - 1) * XSK_UMEM__DEFAULT_FRAME_SIZE;
	size_t size = (size_t)frames * XSK_UMEM__DEFAULT_FRAME_SIZE;
	void *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return fail("mmap(umem)", errno);
	struct xsk_umem_config ucfg = {
		.fill_size = frames / 2,
		.comp_size = XSK_RING_CONS__DEFAULT_NUM_DESCS,
		.frame_size = XSK_UMEM__DEFAULT_FRAME_SIZE,
		.frame_headroom = 0,
	};
	int err = xsk_umem__create(&q->umem, buf, size, &q->fq, &q->cq, &ucfg);
	if (err)
		return fail("xsk_umem__create", err);
	struct xsk_socket_config scfg = {
		.rx_size = frames / 2,
		.tx_size = XSK_RING_PROD__DEFAULT_NUM_DESCS,
		.xdp_flags = XDP_FLAGS_DRV_MODE,
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	err = create_socket(&q->xsk, ifname, queue, q->umem, &q->rx, &scfg);
	if (err)
		return fail("xsk_socket__create", err);
	restock_fill(&q->fq, &q->sp);
	return 0;
}

static void print_total(struct rxq *qs, unsigned nq, unsigned long long packets)
{
	unsigned long long dropped = 0, ring_full = 0, fill_empty = 0;

	for (unsigned i = 0; i < nq; i++) {
		struct xdp_statistics st = {0};
		socklen_t len = sizeof(st);

		getsockopt(xsk_socket__fd(qs[i].xsk), SOL_XDP, XDP_STATISTICS, &st, &len);
		dropped += st.rx_dropped;
		ring_full += st.rx_ring_full;
		fill_empty += st.rx_fill_ring_empty_descs;
	}
	printf("{\"type\":\"total\",\"packets\":%llu,\"kernel\":{\"rx_dropped\":%llu,"
	       "\"rx_ring_full\":%llu,\"rx_fill_ring_empty\":%llu}}\n",
	       packets, dropped, ring_full, fill_empty);
	fflush(stdout);
}

#define MAX_QUEUES 64

int main(int argc, char **argv)
{
	struct rxq qs[MAX_QUEUES] = {0};
	struct pollfd pfds[MAX_QUEUES];
	unsigned queues[MAX_QUEUES], nq = 0;
	struct sigaction sa = {.sa_handler = on_signal};
	unsigned long long packets = 0;

	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: %s IFNAME QUEUE[,QUEUE...] FRAMES [poll|spin|busy-poll]\n",
			argv[0]);
		return 2;
	}
	const char *ifname = argv[1];
	for (char *tok = strtok(argv[2], ","); tok && nq < MAX_QUEUES; tok = strtok(NULL, ","))
		queues[nq++] = (unsigned)strtoul(tok, NULL, 10);
	if (!nq)
		return fail("no QUEUE", EINVAL);
	unsigned frames = (unsigned)strtoul(argv[3], NULL, 10);
	if (frames < 2 || (frames & (frames - 1)))
		return fail("FRAMES must be a power of two, at least 2", EINVAL);
	enum mode mode = MODE_POLL;
	if (argc == 5 && !strcmp(argv[4], "spin"))
		mode = MODE_SPIN;
	else if (argc == 5 && !strcmp(argv[4], "busy-poll"))
		mode = MODE_BUSY_POLL;
	else if (argc == 5 && strcmp(argv[4], "poll"))
		return fail("MODE must be poll, spin or busy-poll", EINVAL);

	for (unsigned i = 0; i < nq; i++) {
		if (open_queue(&qs[i], ifname, queues[i], frames))
			return 1;
		if (mode == MODE_BUSY_POLL)
			enable_busy_poll(xsk_socket__fd(qs[i].xsk));
		pfds[i] = (struct pollfd){.fd = xsk_socket__fd(qs[i].xsk), .events = POLLIN};
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("{\"type\":\"ready\"}\n");
	fflush(stdout);

	while (!stop) {
		unsigned got = 0;
		for (unsigned i = 0; i < nq; i++)
			got += rx_batch(qs[i].xsk, &qs[i].rx, &qs[i].fq, &qs[i].sp);
		packets += got;
		if (got)
			continue;
		if (mode == MODE_POLL)
			poll(pfds, nq, 100);
		else if (mode == MODE_BUSY_POLL)
			for (unsigned i = 0; i < nq; i++)
				recvfrom(pfds[i].fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
	}
	print_total(qs, nq, packets);
	for (unsigned i = 0; i < nq; i++) {
		xsk_socket__delete(qs[i].xsk);
		xsk_umem__delete(qs[i].umem);
	}
	return 0;
}
