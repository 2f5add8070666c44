//! `autogit agent` and `autogit runner discover` through the real binary, in a network
//! namespace of their own (a veth pair; multicast never leaves it): the agent's announcement is
//! found and its address handed to the SSH probe. Needs root (`unshare --net`); without it the
//! test says so and passes, unless `AUTOGIT_REQUIRE_TOOLS` is set.

mod common;

use common::bin;

#[test]
fn discover_finds_a_running_agent() {
    if autogit_drivers::host::euid() != Some(0) {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "root is required for a network namespace (AUTOGIT_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipping: a network namespace needs root");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let script = r#"
set -e
ip link set lo up
ip link add a0 type veth peer name a1
ip addr add 10.89.0.1/24 dev a0
ip addr add 10.89.0.2/24 dev a1
ip link set a0 up
ip link set a1 up
sleep 0.5
"$AUTOGIT" agent --name gpu-box --ssh-port 2222 > "$DIR/agent.log" 2>&1 &
agent=$!
sleep 1
set +e
"$AUTOGIT" runner discover --wait 3s --data-dir "$DIR/data" -o json > "$DIR/out.json" 2> "$DIR/err.log"
echo $? > "$DIR/code"
kill -TERM $agent
wait $agent
echo $? > "$DIR/agent_code"
"#;
    let status = std::process::Command::new("unshare")
        .args(["--net", "--", "sh", "-c", script])
        .env("AUTOGIT", bin())
        .env("DIR", d.path())
        .env("HOME", d.path())
        .status()
        .expect("unshare (util-linux)");
    assert!(status.success(), "{status}");
    let read = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap_or_default();
    let err = read("err.log");
    assert!(
        err.contains("mDNS: gpu-box (gpu-box.local) at 10.89.0.") && err.contains("gpus=0"),
        "discover stderr: {err}\nagent: {}",
        read("agent.log")
    );
    // The agent's address went to the SSH probe (nothing listens on port 22 there).
    assert!(
        read("out.json").contains("10.89.0."),
        "{}",
        read("out.json")
    );
    assert!(read("agent.log").contains("announcing gpu-box._autogit._tcp.local."));
    assert_eq!(
        read("agent_code").trim(),
        "0",
        "the agent stops cleanly on SIGTERM"
    );
}
