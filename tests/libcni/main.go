// afxdp-libcni drives CNI plugins through libcni, the library Multus,
// containerd and CRI-O call plugins with, so the end-to-end tests see what a
// runtime sees: libcni's config parsing, chaining, result cache, version
// conversion, and its STATUS and GC.
//
//	afxdp-libcni -conf FILE -cmd add|check|del|status|gc|version [flags]
//
// FILE is a conflist ("plugins": [...]) or a single plugin config (as Multus
// runs a NetworkAttachmentDefinition's). Success prints one JSON object on
// stdout and exits 0; failure prints {"error", "code", "msg", "details"} (code
// and msg from the plugin's CNI error when there is one) and exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

type options struct {
	conf, cmd, cacheDir, path      string
	container, netns, ifname, args string
	valid                          string
	plugin                         string
	timeout                        time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.conf, "conf", "", "conflist or single plugin config file")
	flag.StringVar(&o.cmd, "cmd", "", "add | check | del | status | gc | version")
	flag.StringVar(&o.cacheDir, "cache-dir", "", "libcni's result cache (a runtime's /var/lib/cni)")
	flag.StringVar(&o.path, "path", "/opt/cni/bin", "CNI_PATH (':'-separated)")
	flag.StringVar(&o.container, "container", "", "CNI_CONTAINERID")
	flag.StringVar(&o.netns, "netns", "", "CNI_NETNS")
	flag.StringVar(&o.ifname, "ifname", "net1", "CNI_IFNAME")
	flag.StringVar(&o.args, "args", "", "CNI_ARGS, K=V;K=V")
	flag.StringVar(&o.valid, "valid", "", "gc: valid attachments, CONTAINERID/IFNAME,...")
	flag.StringVar(&o.plugin, "plugin", "", "version: the plugin type to ask")
	flag.DurationVar(&o.timeout, "timeout", time.Minute, "for the whole command")
	flag.Parse()

	out, err := run(o)
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

// fail prints err as JSON (with the plugin's CNI error code when libcni
// passed one up) and exits 1.
func fail(err error) {
	out := map[string]any{"error": err.Error(), "code": 0}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		out["code"], out["msg"], out["details"] = cniErr.Code, cniErr.Msg, cniErr.Details
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	os.Exit(1)
}

func run(o options) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(o.path), o.cacheDir, nil)
	if o.cmd == "version" {
		info, err := cni.GetVersionInfo(ctx, o.plugin)
		if err != nil {
			return nil, err
		}
		return map[string]any{"supportedVersions": info.SupportedVersions()}, nil
	}
	list, single, err := load(o.conf)
	if err != nil {
		return nil, err
	}
	rt := &libcni.RuntimeConf{ContainerID: o.container, NetNS: o.netns, IfName: o.ifname, Args: cniArgs(o.args)}
	done := map[string]any{}
	switch o.cmd {
	case "add":
		var res types.Result
		if single != nil {
			res, err = cni.AddNetwork(ctx, single, rt)
		} else {
			res, err = cni.AddNetworkList(ctx, list, rt)
		}
		if err != nil {
			return nil, err
		}
		return addOutput(res)
	case "check":
		if single != nil {
			return done, cni.CheckNetwork(ctx, single, rt)
		}
		return done, cni.CheckNetworkList(ctx, list, rt)
	case "del":
		if single != nil {
			return done, cni.DelNetwork(ctx, single, rt)
		}
		return done, cni.DelNetworkList(ctx, list, rt)
	case "status":
		return done, cni.GetStatusNetworkList(ctx, list)
	case "gc":
		return done, cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: attachments(o.valid)})
	}
	return nil, fmt.Errorf("unknown -cmd %q", o.cmd)
}

// load reads a conflist, or a single plugin config (then also as a
// one-plugin list, for STATUS and GC, which libcni only has for lists).
func load(file string) (*libcni.NetworkConfigList, *libcni.PluginConfig, error) {
	bytes, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(bytes, &probe); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	if _, isList := probe["plugins"]; isList {
		list, err := libcni.NetworkConfFromBytes(bytes)
		return list, nil, err
	}
	single, err := libcni.NetworkPluginConfFromBytes(bytes)
	if err != nil {
		return nil, nil, err
	}
	list, err := libcni.ConfListFromConf(single)
	return list, single, err
}

// addOutput: the result as libcni parsed it (its version and JSON) and
// converted to the current version, as a runtime reads it.
func addOutput(res types.Result) (any, error) {
	current, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("converting the %s result to %s: %w", res.Version(), types100.ImplementedSpecVersion, err)
	}
	return map[string]any{"rawVersion": res.Version(), "raw": res, "current": current}, nil
}

func cniArgs(s string) [][2]string {
	var out [][2]string
	for _, kv := range strings.Split(s, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

func attachments(s string) []types.GCAttachment {
	out := []types.GCAttachment{}
	for _, a := range strings.Split(s, ",") {
		if id, ifname, ok := strings.Cut(a, "/"); ok {
			out = append(out, types.GCAttachment{ContainerID: id, IfName: ifname})
		}
	}
	return out
}
