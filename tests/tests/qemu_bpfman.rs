//! Issue 9's XDP end-to-end through afxdp-dp's bpfman backend. Runs **inside
//! the qemu guest** that `tests/qemu/bpfman-xdp.sh` boots (Debian's kernel
//! accepts the freplace programs bpfman attaches XDP with; this host's
//! kernel refuses them), so it is `#[ignore]`d on the host and run there with
//! `--ignored`.
//!
//! The guest script starts `bpfman-rpc` (its socket in `AFXDP_BPFMAN_SOCKET`,
//! which afxdp-dp reads too) and `docker-registry` over HTTPS on 127.0.0.1
//! serving the built-in program as a bytecode image (`AFXDP_BPFMAN_IMAGE`,
//! pinned by digest). The lab node runs the `afxdp-dp` binary with one pool
//! `programManager: bpfman` on that image, pinned or UDS sharing, a kubelet
//! stand-in calling Allocate and afxdp-cni moving the device into the pod:
//! bpfman attaches the program natively, the example pod app (nobody,
//! `CAP_NET_RAW` only) receives an exact count through the XSKMAP bpfman
//! pinned (re-pinned by afxdp-dp in the pod's directory, or its FD passed
//! over the UDS handshake), and the pod's removal (CNI DEL) has bpfman
//! unload it.

use std::{collections::BTreeMap, time::Duration};

use afxdp_bpfman::{BpfmanClient, ListFilter, META_POOL};
use afxdp_lab::{DaemonRun, Lab, LabConfig, Sharing, POOL};
use afxdp_testnet::wait_until;

/// UDP frames per flow; two flows.
const PER_FLOW: u32 = 500;
const WAIT: Duration = Duration::from_secs(30);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test runs in the qemu guest (tests/qemu/bpfman-xdp.sh)")
    })
}

/// What bpfman holds for the lab's pool. Blocks on bpfman: off the async
/// worker with `block_in_place`.
fn ours(client: &BpfmanClient) -> Vec<afxdp_bpfman::Program> {
    tokio::task::block_in_place(|| {
        client.list(&ListFilter {
            metadata: BTreeMap::from([(META_POOL.to_string(), POOL.to_string())]),
            bpfman_only: true,
        })
    })
    .expect("bpfman List")
}

fn link_show(lab: &Lab, pod: Option<&afxdp_lab::Pod>, dev: &str) -> String {
    match pod {
        Some(p) => p.netns.ip(&["link", "show", "dev", dev]),
        None => afxdp_testnet::ip(&["link", "show", "dev", dev]),
    }
    .unwrap_or_else(|e| panic!("ip link show {dev}: {e}; afxdp-dp log: {}", log(lab)))
}

fn log(lab: &Lab) -> String {
    lab.process
        .as_ref()
        .map(|p| p.log_tail(40))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in the qemu guest: bash tests/qemu/bpfman-xdp.sh"]
async fn afxdp_dp_bpfman_pool_serves_an_unprivileged_pod() {
    bpfman_pool_end_to_end(Sharing::Pinned).await;
}

/// The same over the UDS handshake: the pod app gets the FD afxdp-dp opens
/// from bpfman's pin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in the qemu guest: bash tests/qemu/bpfman-xdp.sh"]
async fn afxdp_dp_bpfman_pool_serves_an_unprivileged_pod_over_uds() {
    bpfman_pool_end_to_end(Sharing::Uds).await;
}

async fn bpfman_pool_end_to_end(sharing: Sharing) {
    afxdp_testnet::require_root();
    let image = env("AFXDP_BPFMAN_IMAGE");
    let client = BpfmanClient::new(env("AFXDP_BPFMAN_SOCKET"), WAIT).expect("bpfman client");
    // The lab's pool goes to bpfman, on the image.
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        queues: 2,
        sharing,
        daemon: DaemonRun::Process,
        bpfman: Some(serde_json::json!({ "image": image, "pullPolicy": "IfNotPresent" })),
        ..LabConfig::default()
    })
    .await
    .expect("lab on the bpfman pool");
    let nic = lab.nics[0].name.clone();
    assert!(
        ours(&client).is_empty(),
        "bpfman holds a program before Allocate"
    );

    // Allocate (kubelet stand-in) → bpfman loads from the image and attaches;
    // CNI ADD moves the device into the pod; the app runs unprivileged.
    if let Err(e) = lab.add_pod("guest-pod").await {
        panic!("admit: {e}; afxdp-dp log:\n{}", log(&lab));
    }
    let listed = ours(&client);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let managed = listed[0].managed.as_ref().expect("bpfman's record");
    assert!(
        matches!(&managed.bytecode, Some(afxdp_bpfman::Bytecode::Image(i)) if i.url == image),
        "loaded from {:?}",
        managed.bytecode
    );
    let pod = &lab.pods[0];
    let shown = link_show(&lab, Some(pod), &nic);
    assert!(
        shown.split_whitespace().any(|w| w == "xdp") && shown.contains("xdp_dispatcher"),
        "no native bpfman dispatcher on {nic}: {shown}"
    );
    eprintln!(
        "qemu-bpfman: afxdp-dp had bpfman load program {} from {image} and attach it natively to {nic}",
        listed[0].id
    );

    // Exactly 2 × PER_FLOW frames out of the wire, exactly that many in the app.
    let want = u64::from(PER_FLOW) * 2;
    assert_eq!(lab.send(&nic, 2, PER_FLOW).expect("send"), want);
    let pod = &lab.pods[0];
    pod.wait_total(want, WAIT).expect("the pod app receives");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pod.total(), want, "counts {:?}", pod.counts());
    eprintln!(
        "qemu-bpfman: the unprivileged pod app received exactly {want} frames {:?} ({sharing:?})",
        pod.counts()
    );

    // Pod deleted: CNI DEL returns the device, afxdp-dp has bpfman unload.
    lab.remove_pod("guest-pod").await.expect("remove pod");
    let released = wait_until(WAIT, Duration::from_millis(100), || {
        ours(&client).is_empty()
    });
    assert!(
        released,
        "bpfman still holds {:?}; afxdp-dp log:\n{}",
        ours(&client),
        log(&lab)
    );
    let shown = link_show(&lab, None, &nic);
    assert!(!shown.contains("xdp"), "XDP left on {nic}: {shown}");
    eprintln!("qemu-bpfman: released: bpfman lists nothing of the pool, no XDP on {nic}");
    lab.teardown().await.expect("teardown");
}
