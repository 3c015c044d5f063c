// Load the dispatcher, load ext_pass as an freplace program targeting the
// dispatcher's slot, link it there (link pinned, so it outlives us) and attach
// the dispatcher to an interface in native (driver) mode: the steps bpfman
// takes for every XDP program.
//   freplace DISPATCHER.o EXT.o IFNAME LINK_PIN
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

static struct bpf_program *load_one(const char *path, const char *name,
				    int target_fd)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	struct bpf_program *prog;

	if (!obj) {
		fprintf(stderr, "open %s: %s\n", path, strerror(errno));
		return NULL;
	}
	prog = bpf_object__find_program_by_name(obj, name);
	if (!prog) {
		fprintf(stderr, "no program %s in %s\n", name, path);
		return NULL;
	}
	if (target_fd >= 0 && bpf_program__set_attach_target(prog, target_fd, "slot")) {
		fprintf(stderr, "set_attach_target: %s\n", strerror(errno));
		return NULL;
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "load %s from %s: %s\n", name, path, strerror(errno));
		return NULL;
	}
	return prog;
}

int main(int argc, char **argv)
{
	struct bpf_program *disp, *ext;
	struct bpf_link *link;
	unsigned int ifindex;
	int dfd, err;

	if (argc != 5) {
		fprintf(stderr, "usage: %s DISPATCHER.o EXT.o IFNAME LINK_PIN\n", argv[0]);
		return 2;
	}
	ifindex = if_nametoindex(argv[3]);
	if (!ifindex) {
		fprintf(stderr, "no interface %s\n", argv[3]);
		return 1;
	}
	disp = load_one(argv[1], "dispatcher", -1);
	if (!disp)
		return 1;
	dfd = bpf_program__fd(disp);
	ext = load_one(argv[2], "ext_pass", dfd);
	if (!ext)
		return 1;
	link = bpf_program__attach_freplace(ext, dfd, "slot");
	if (!link) {
		fprintf(stderr, "attach freplace: %s\n", strerror(errno));
		return 1;
	}
	err = bpf_link__pin(link, argv[4]);
	if (err) {
		fprintf(stderr, "pin link %s: %s\n", argv[4], strerror(-err));
		return 1;
	}
	err = bpf_xdp_attach(ifindex, dfd, XDP_FLAGS_DRV_MODE, NULL);
	if (err) {
		fprintf(stderr, "xdp attach %s: %s\n", argv[3], strerror(-err));
		return 1;
	}
	printf("freplace: ext_pass linked into dispatcher's slot, dispatcher on %s (native)\n",
	       argv[3]);
	return 0;
}
