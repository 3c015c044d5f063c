//! Pairing with bpfman's own CSI driver (`csi.bpfman.io`, bpfman-rpc
//! `--csi-support`), for pools whose program name is fixed: a program loaded
//! with `bpfman.io/ProgramName` is found by the volume's
//! `csi.bpfman.io/program`, and the maps `csi.bpfman.io/maps` names are
//! pinned in a fresh bpffs at the target, group-owned by the volume's mount
//! group. The real daemon (see `afxdp_testnet::bpfman`), called over its CSI
//! socket as the kubelet would; root, and bpfman-rpc installed (CI fails
//! without them, elsewhere the test skips, saying so). A TCX program of the
//! test object stands in (this kernel refuses bpfman's XDP path): the map
//! is the same `xsks_map` either way.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use afxdp_bpfman::{BpfmanClient, Bytecode, LoadSpec, ProgramType, META_PROGRAM_NAME};
use afxdp_program::XSKS_MAP_NAME;
use afxdp_proto::csi::{self, node_client::NodeClient, volume_capability};
use afxdp_testnet::bpfman::Bpfmand;

const PROGRAM_NAME: &str = "afxdp-fastnet";
const MOUNT_GROUP: u32 = 3456;

/// The kernel's id of the map pinned at `pin`.
fn map_id(pin: &Path) -> u32 {
    let map =
        aya::maps::MapData::from_pin(pin).unwrap_or_else(|e| panic!("open {}: {e}", pin.display()));
    map.info().expect("map info").id()
}

fn publish(target: &Path, program: &str) -> csi::NodePublishVolumeRequest {
    let context: HashMap<String, String> = [
        ("csi.bpfman.io/program", program),
        ("csi.bpfman.io/maps", XSKS_MAP_NAME),
        ("csi.storage.k8s.io/ephemeral", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    csi::NodePublishVolumeRequest {
        volume_id: format!("csi-{}", std::process::id()),
        target_path: target.display().to_string(),
        volume_capability: Some(csi::VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(
                volume_capability::MountVolume {
                    volume_mount_group: MOUNT_GROUP.to_string(),
                    ..Default::default()
                },
            )),
            access_mode: None,
        }),
        volume_context: context,
        ..Default::default()
    }
}

#[test]
fn csi_bpfman_io_pins_the_map_of_the_program_named_in_the_volume() {
    let Some(d) = Bpfmand::start_csi_or_skip("node-t") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/xsk_tcx.bpf.c");
    let object = dir.path().join("xsk_tcx.bpf.o");
    afxdp_testnet::bpfman::compile_bpf(&src, &object);
    let client = BpfmanClient::new(d.socket(), Duration::from_secs(30)).expect("client");
    let meta: BTreeMap<String, String> =
        [(META_PROGRAM_NAME.to_string(), PROGRAM_NAME.to_string())].into();
    let prog = client
        .load(&LoadSpec {
            bytecode: Bytecode::File(object),
            function: "xsk_tcx_count".into(),
            program_type: ProgramType::Tcx,
            metadata: meta,
        })
        .unwrap_or_else(|e| panic!("Load: {e}\n{}", d.log()));
    let managed = prog.managed.clone().expect("bpfman's record");
    let loaded_map = d.path(&managed.map_pin_path).join(XSKS_MAP_NAME);

    let csi_socket = d.csi_socket();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !csi_socket.exists() {
        assert!(
            Instant::now() < deadline,
            "no CSI socket {}\n{}",
            csi_socket.display(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target = dir.path().join("pod/volumes/kubernetes.io~csi/maps/mount");
    rt.block_on(async {
        let channel = afxdp_proto::unix::connect(&csi_socket, Duration::from_secs(5))
            .await
            .expect("bpfman's CSI socket");
        let info = csi::identity_client::IdentityClient::new(channel.clone())
            .get_plugin_info(csi::GetPluginInfoRequest {})
            .await
            .expect("GetPluginInfo")
            .into_inner();
        assert_eq!(info.name, "csi.bpfman.io");
        let mut node = NodeClient::new(channel);
        // A name no program carries: refused, nothing pinned.
        let refused = node
            .node_publish_volume(publish(&target, "no-such-program"))
            .await
            .expect_err("unknown program name");
        assert!(refused.message().contains("not found"), "{refused:?}");
        node.node_publish_volume(publish(&target, PROGRAM_NAME))
            .await
            .unwrap_or_else(|e| panic!("NodePublishVolume: {e}\n{}", d.log()));
        // In bpfman's mount namespace the target holds the program's map.
        let pinned = d.path(&target).join(XSKS_MAP_NAME);
        assert_eq!(map_id(&pinned), map_id(&loaded_map));
        let meta = std::fs::metadata(&pinned).expect("pin");
        assert_eq!(meta.gid(), MOUNT_GROUP);
        assert_eq!(meta.mode() & 0o777, 0o660);
        node.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: format!("csi-{}", std::process::id()),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("NodeUnpublishVolume: {e}\n{}", d.log()));
        assert!(
            !d.path(&target).join(XSKS_MAP_NAME).exists(),
            "the map is still pinned at the target"
        );
    });
    client.unload(prog.id).expect("Unload");
}
