//! CNI GC (spec 1.1): with `cni.dev/valid-attachments`, afxdp-dp releases
//! every device plumbed through that network whose attachment is not
//! listed — and nothing else: listed attachments, devices allocated but
//! not plumbed yet, and other networks' attachments stay.

use afxdp_lab::{cni, RESOURCE};

fn gc(lab: &afxdp_lab::Lab, network: &str, valid: serde_json::Value) -> cni::CniOutcome {
    let mut conf = lab.net_conf("");
    conf["name"] = network.into();
    conf["cni.dev/valid-attachments"] = valid;
    cni::exec(&lab.cni, "GC", "", None, "", "", "", &conf).expect("exec GC")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_releases_only_this_networks_unlisted_attachments() {
    let mut lab = afxdp_e2e::default_lab(3).await;
    lab.add_pod("kept").await.expect("kept");
    lab.add_pod("stale").await.expect("stale");
    let (kept, stale) = (lab.pods[0].device.clone(), lab.pods[1].device.clone());
    let kept_container = lab.pods[0].container_id.clone();
    let unplumbed = lab
        .kubelet()
        .admit_pod("lab", "unplumbed", "app", RESOURCE, 1)
        .await
        .expect("allocate")
        .device_ids[0]
        .clone();
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let valid = serde_json::json!([{ "containerID": kept_container, "ifname": "net1" }]);

    // Another network's GC touches none of ours.
    let other = gc(&lab, "some-other-net", serde_json::json!([]));
    assert!(other.success, "{other:?}");
    assert_eq!(agent.allocated_devices().len(), 3);

    let out = gc(&lab, "afxdp-lab", valid.clone());
    assert!(out.success && out.stdout.trim().is_empty(), "{out:?}");
    assert!(
        agent.allocation(&stale).is_none(),
        "the stale attachment was kept"
    );
    assert!(
        !afxdp_e2e::xdp_attached_in(&lab.pods[1].netns, &stale),
        "the stale attachment's program is still attached"
    );
    assert!(
        agent.allocation(&kept).is_some(),
        "a listed attachment was released"
    );
    assert!(
        afxdp_e2e::xdp_attached_in(&lab.pods[0].netns, &kept),
        "the listed attachment lost its program"
    );
    assert!(
        agent.allocation(&unplumbed).is_some(),
        "an unplumbed allocation was released"
    );
    let sent = lab.send(&kept, 4, 10).expect("send");
    lab.pods[0]
        .wait_total(sent, std::time::Duration::from_secs(10))
        .expect("the kept pod receives");

    // Again: nothing more to do.
    assert!(gc(&lab, "afxdp-lab", valid).success);
    assert_eq!(agent.allocated_devices().len(), 2);
    lab.kubelet().remove_pod("lab", "unplumbed");
    lab.teardown().await.expect("teardown");
}
