//! A CNI DEL replayed for an old pod (runtimes retry DEL) must not take the
//! device from the pod kubelet has since given it to, and a CNI ADD from
//! another pod's container for a plumbed device is refused, naming the
//! holder. The device's claim is the container CNI ADD plumbed it for.

use std::time::Duration;

use afxdp_lab::{cni, Lab, LabConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_del_leaves_the_next_pod_its_device() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        ..Default::default()
    })
    .await
    .expect("lab");
    let nic = lab.nics[0].name.clone();
    let conf = cni::net_conf(&nic, &lab.paths.node_api, "1.1.0");
    lab.add_pod("old").await.expect("old pod");
    let (old_ns, old_container) = (
        lab.pods[0].namespace.clone(),
        lab.pods[0].container_id.clone(),
    );
    lab.remove_pod("old").await.expect("remove the old pod");
    lab.add_pod("new").await.expect("new pod");
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let new_container = lab.pods[0].container_id.clone();
    assert_ne!(old_container, new_container);

    // The old pod's DEL again (its netns is gone): success, nothing released.
    let del = cni::exec(
        &lab.cni,
        "DEL",
        &old_container,
        None,
        "net1",
        &old_ns,
        "old",
        &conf,
    )
    .expect("exec DEL");
    assert!(del.success, "replayed DEL: {} {}", del.stdout, del.stderr);
    let alloc = agent.allocation(&nic).expect("still allocated");
    assert_eq!(
        alloc.claim.expect("claimed by ADD").container_id,
        new_container
    );
    assert!(
        afxdp_e2e::xdp_attached_in(&lab.pods[0].netns, &nic),
        "the new pod's program was detached"
    );
    let sent = lab.send(&nic, 8, 10).expect("send");
    lab.pods[0]
        .wait_total(sent, Duration::from_secs(10))
        .expect("the new pod still receives");

    // Another pod's ADD for the plumbed device: a spec error naming the holder;
    // the device stays in the new pod.
    let stranger = afxdp_testnet::Netns::new("afxstr").expect("netns");
    let add = cni::exec(
        &lab.cni,
        "ADD",
        "c-stranger",
        Some(stranger.path()),
        "net1",
        &old_ns,
        "stranger",
        &conf,
    )
    .expect("exec ADD");
    assert!(!add.success, "a stranger's ADD succeeded: {}", add.stdout);
    let err = add.json().expect("spec error JSON");
    let text = format!("{} {}", err["msg"], err["details"]);
    assert!(text.contains(&new_container), "{text}");
    assert!(
        lab.pods[0].netns.has_link(&nic),
        "the device left the new pod"
    );
    assert!(!stranger.has_link(&nic));

    // The holder's own DEL releases.
    lab.remove_pod("new").await.expect("remove the new pod");
    assert!(
        agent.allocation(&nic).is_none(),
        "not released by its holder"
    );
    assert!(!afxdp_e2e::xdp_attached(&nic), "program still attached");
    lab.teardown().await.expect("teardown");
}
