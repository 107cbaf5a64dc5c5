//! Whether KVM can really run a guest here. A `/dev/kvm` node can exist and still hang
//! a standard guest, so the probe boots the guest's kernel under KVM with a deadline
//! and watches the serial console for the kernel's first words.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_agent_api::Accel;

/// How long a working KVM needs to reach the kernel's banner.
const DEADLINE: Duration = Duration::from_secs(8);

pub fn probe_kvm(kernel: &Path, scratch: &Path) -> Accel {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        tracing::info!("no usable /dev/kvm: guests run under TCG (software emulation)");
        return Accel::Tcg;
    }
    let _ = std::fs::create_dir_all(scratch);
    let log = scratch.join(format!("kvm-probe-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    // Under `timeout`: should kiln die mid-probe, the probe still ends on its own.
    let child = Command::new("timeout")
        .args(["--signal=KILL", &(DEADLINE.as_secs() + 2).to_string(), "qemu-system-x86_64"])
        .args([
            "-machine",
            "pc,accel=kvm",
            "-cpu",
            "host",
            "-m",
            "128M",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Accel::Tcg;
    };
    let started = Instant::now();
    let mut works = false;
    while started.elapsed() < DEADLINE {
        if std::fs::read(&log).is_ok_and(|b| b.windows(13).any(|w| w == b"Linux version")) {
            works = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM to `timeout`, which passes it on to QEMU (a SIGKILL would orphan QEMU).
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    if works {
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "KVM runs a guest: using it");
        Accel::Kvm
    } else {
        tracing::warn!("/dev/kvm is present but did not run a guest within {DEADLINE:?}: guests run under TCG (software emulation)");
        Accel::Tcg
    }
}
