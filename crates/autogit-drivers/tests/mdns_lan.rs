//! mDNS discovery: an announcement (`autogit agent`) is found by a browse (`runner discover`).
//! Runs in a network namespace of its own with a veth pair (multicast needs an interface that
//! supports it, and nothing leaves the namespace), so it needs root; without it the test says
//! so and passes, unless `AUTOGIT_REQUIRE_TOOLS` is set.

use autogit_drivers::mdns::{announce, browse};
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn an_announced_agent_is_found_and_forgotten_when_it_goes() {
    // The test re-runs itself inside a fresh namespace (`unshare --net`), where it brings up
    // a veth pair; the outer run only starts it.
    if std::env::var_os("AUTOGIT_MDNS_INNER").is_none() {
        if autogit_drivers::host::euid() != Some(0) {
            assert!(
                std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
                "root is required for a network namespace (AUTOGIT_REQUIRE_TOOLS=1)"
            );
            eprintln!("skipping: a network namespace needs root");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("unshare")
            .args(["--net", "--"])
            .arg(&exe)
            .args([
                "--exact",
                "an_announced_agent_is_found_and_forgotten_when_it_goes",
                "--nocapture",
            ])
            .env("AUTOGIT_MDNS_INNER", "1")
            .status()
            .expect("unshare (util-linux)");
        assert!(status.success(), "inner run failed: {status}");
        return;
    }
    for cmd in [
        "ip link set lo up",
        "ip link add a0 type veth peer name a1",
        "ip addr add 10.88.0.1/24 dev a0",
        "ip addr add 10.88.0.2/24 dev a1",
        "ip link set a0 up",
        "ip link set a1 up",
    ] {
        let ok = std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{cmd}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let props = BTreeMap::from([
        ("gpus".to_owned(), "1".to_owned()),
        ("wsl2".to_owned(), "true".to_owned()),
    ]);
    let a = announce("gpu-box", 22, &props, false).unwrap();
    assert_eq!(a.fullname(), "gpu-box._autogit._tcp.local.");
    let found = browse(Duration::from_secs(4), false).unwrap();
    let agent = found
        .iter()
        .find(|f| f.instance == "gpu-box")
        .unwrap_or_else(|| panic!("not found: {found:?}"));
    assert_eq!(agent.port, 22);
    assert_eq!(agent.host, "gpu-box.local");
    assert_eq!(agent.properties.get("gpus").map(String::as_str), Some("1"));
    assert!(
        agent
            .addresses
            .iter()
            .any(|a| a.octets()[..3] == [10, 88, 0]),
        "{agent:?}"
    );
    drop(a);
    std::thread::sleep(Duration::from_millis(500));
    let after = browse(Duration::from_secs(2), false).unwrap();
    assert!(!after.iter().any(|f| f.instance == "gpu-box"), "{after:?}");
}
