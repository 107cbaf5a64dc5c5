//! The QEMU command line for a VM spec: a pure function, tested against expected
//! arguments without starting QEMU.

use std::path::Path;

use kiln_agent_api::{Accel, Network, VmSpec};
use kiln_types::Architecture;

/// Debian's UEFI firmware for arm64 guests (package qemu-efi-aarch64).
pub const AARCH64_FIRMWARE: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";

/// The emulator for an architecture.
pub fn program(arch: Architecture) -> &'static str {
    match arch {
        Architecture::X86_64 | Architecture::I386 => "qemu-system-x86_64",
        Architecture::Arm64 => "qemu-system-aarch64",
    }
}

/// An EC2-looking SMBIOS UUID (`ec2` first), derived from the instance id, so that
/// cloud-init recognises the platform.
pub fn smbios_uuid(instance_id: &str) -> String {
    let hex: String = instance_id.trim_start_matches("i-").chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let padded = format!("{hex:0<29}");
    let h = &padded[..29];
    format!("ec2{}-{}-{}-{}-{}", &h[0..5], &h[5..9], &h[9..13], &h[13..17], &h[17..29])
}

/// Where a host keeps what a VM uses: the VM's own directory (QMP socket, serial log,
/// pid file, metadata socket), the store its spec's files are named in, and the
/// program that bridges a guest connection to the metadata socket (`kiln pipe`).
pub struct Place<'a> {
    pub vm_dir: &'a Path,
    pub store: &'a Path,
    pub pipe_program: &'a Path,
    /// The host's client credentials for volume servers, if it has them (a joined
    /// host): every VM gets them, so that a served volume can be hot-plugged later.
    pub nbd_tls: Option<&'a Path>,
}

/// The id of the TLS credentials a VM reaches volume servers with.
pub const NBD_CREDS: &str = "kiln-nbd";

/// The name of the metadata socket in a VM's directory (user-mode network).
pub const IMDS_SOCKET: &str = "imds.sock";

/// How a host trims what each VM costs it, beyond what the spec asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// The TCG translation cache, MiB (`-accel tcg,tb-size=`), for guests whose image
    /// names no size of its own; None keeps QEMU's default for every guest (images'
    /// own sizes too), which on a large host lets each VM's cache grow past 200 MiB.
    pub tb_size_mib: Option<u32>,
    /// A virtio-balloon device with free-page reporting, through which a guest whose
    /// kernel supports it hands freed memory back to the host.
    pub balloon: bool,
}

impl Default for Tuning {
    /// 32 MiB of translation cache for images that name none: Debian 12 took 1.8 times
    /// as long to boot with 16 as with 32, and 8 MiB made kiln-tiny four times slower;
    /// kiln-tiny's recipe names 16 (docs/operations.md, "Memory per instance").
    fn default() -> Self {
        Self { tb_size_mib: Some(32), balloon: true }
    }
}

impl Tuning {
    /// The translation cache `spec`'s guest gets: its image's own size, else the host's.
    pub fn tb_size_for(&self, spec: &VmSpec) -> Option<u32> {
        self.tb_size_mib.map(|host| spec.tcg_tb_size_mib.unwrap_or(host))
    }
}

/// The arguments (after the program) that start `spec` daemonized at `place`.
pub fn arguments(spec: &VmSpec, accel: Accel, place: &Place<'_>, tuning: &Tuning) -> Vec<String> {
    let dir = place.vm_dir;
    let d = |name: &str| dir.join(name).display().to_string();
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let machine = match spec.architecture {
        Architecture::X86_64 | Architecture::I386 => "pc",
        Architecture::Arm64 => "virt",
    };
    push(&["-name", &format!("kiln-{}", spec.instance_id)]);
    push(&["-machine", machine]);
    push(&["-accel", &accel_option(accel, tuning.tb_size_for(spec))]);
    let cpu = match (spec.architecture, accel) {
        (_, Accel::Kvm) => "host",
        (Architecture::Arm64, Accel::Tcg) => "cortex-a57",
        (Architecture::I386, Accel::Tcg) => "qemu32",
        (Architecture::X86_64, Accel::Tcg) => "qemu64",
    };
    push(&["-cpu", cpu]);
    push(&["-smp", &spec.vcpus.to_string(), "-m", &format!("{}M", spec.memory_mib)]);
    let uuid = smbios_uuid(&spec.instance_id);
    push(&["-uuid", &uuid]);
    if spec.architecture != Architecture::Arm64 {
        push(&["-smbios", &format!("type=1,manufacturer=Amazon EC2,product=Kiln,serial={uuid},uuid={uuid}")]);
    }
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-serial", &format!("file:{}", d("serial.log"))]);
    push(&["-qmp", &format!("unix:{},server=on,wait=off", d("qmp.sock"))]);
    push(&["-pidfile", &d("qemu.pid"), "-daemonize"]);
    if let Some(k) = &spec.kernel {
        push(&["-kernel", &k.under(place.store).display().to_string()]);
    }
    if let Some(i) = &spec.initrd {
        push(&["-initrd", &i.under(place.store).display().to_string()]);
    }
    if let Some(c) = &spec.cmdline {
        push(&["-append", c]);
    }
    if spec.kernel.is_none() && spec.architecture == Architecture::Arm64 {
        // No kernel to boot directly: UEFI firmware boots the disk.
        push(&["-bios", AARCH64_FIRMWARE]);
    }
    if let Some(tls) = place.nbd_tls {
        push(&["-object", &format!("tls-creds-x509,id={NBD_CREDS},dir={},endpoint=client", tls.display())]);
    }
    for (n, disk) in spec.disks.iter().enumerate() {
        // Ids named after the volume, so that hot-plug and resizing find each disk.
        let (drive, device) = disk_ids(&disk.volume_id);
        let (nodes, options) = drive_options(disk, place.store, &drive);
        for node in nodes {
            push(&["-blockdev", &node.to_string()]);
        }
        push(&["-drive", &options]);
        // The root disk boots first when the firmware boots the disk (with a kernel given,
        // QEMU's loader holds boot index 0).
        let boot = if n == 0 && spec.kernel.is_none() { ",bootindex=0" } else { "" };
        push(&["-device", &format!("virtio-blk-pci,drive={drive},id={device},serial={}{boot}", disk_serial(disk))]);
    }
    match &spec.network {
        Network::None => {}
        Network::User => {
            let pipe = format!("{} pipe {}", place.pipe_program.display(), d(IMDS_SOCKET));
            push(&[
                "-netdev",
                &format!(
                    "user,id=net0,net=169.254.0.0/16,host=169.254.0.1,dhcpstart=169.254.0.15,guestfwd=tcp:169.254.169.254:80-cmd:{pipe}"
                ),
            ]);
            push(&["-device", &format!("virtio-net-pci,netdev=net0,mac={}", mac(&spec.instance_id))]);
        }
        Network::Vpc { mac, nics, .. } => {
            let tap = kiln_agent_api::tap_name(&spec.instance_id);
            push(&["-netdev", &format!("tap,id=net0,ifname={tap},script=no,downscript=no")]);
            push(&["-device", &format!("virtio-net-pci,netdev=net0,mac={mac}")]);
            // Further interfaces carry ids, so that hot-plug finds and removes them.
            for nic in nics {
                let (netdev, device) = nic_ids(&nic.interface_id);
                let tap = kiln_agent_api::tap_name(&nic.interface_id);
                push(&["-netdev", &format!("tap,id={netdev},ifname={tap},script=no,downscript=no")]);
                push(&["-device", &format!("virtio-net-pci,netdev={netdev},mac={},id={device}", nic.mac)]);
            }
        }
    }
    push(&["-device", "virtio-rng-pci"]);
    if tuning.balloon {
        push(&["-device", BALLOON_DEVICE]);
    }
    a
}

/// The `-accel` value: the accelerator, and under TCG the translation cache's size.
pub fn accel_option(accel: Accel, tb_size_mib: Option<u32>) -> String {
    match (accel, tb_size_mib) {
        (Accel::Tcg, Some(mib)) => format!("tcg,tb-size={mib}"),
        _ => accel.as_str().to_owned(),
    }
}

/// The balloon device through which a guest reports freed pages to the host.
pub const BALLOON_DEVICE: &str = "virtio-balloon-pci,id=balloon0,free-page-reporting=on";

/// The QEMU ids of a volume's drive and device: `v` and `b` with its hex digits.
pub fn disk_ids(volume_id: &str) -> (String, String) {
    let hex = volume_id.rsplit('-').next().unwrap_or(volume_id);
    (format!("v{hex}"), format!("b{hex}"))
}

/// The serial number the guest reads for a disk: the volume id without its dash, as
/// EC2's NVMe devices show it.
pub fn disk_serial(disk: &kiln_agent_api::Disk) -> String {
    disk.volume_id.replace('-', "")
}

/// A drive's options (for `-drive` and for hot-plug's `drive_add`): the volume's qcow2
/// file in the store, or the top a volume server exports, on the nodes of the layers
/// under it (to be added first, in order: `-blockdev`, `blockdev-add`).
pub fn drive_options(disk: &kiln_agent_api::Disk, store: &Path, drive: &str) -> (Vec<serde_json::Value>, String) {
    match &disk.served {
        Some(served) => {
            let (nodes, on) = crate::nbd::layer_nodes(disk, served, store, NBD_CREDS);
            (nodes, crate::nbd::drive_options(disk, served, store, drive, NBD_CREDS, on.as_deref()))
        }
        None => (Vec::new(), file_drive_options(&disk.file.under(store), drive)),
    }
}

/// A qcow2 file's drive options.
pub fn file_drive_options(file: &Path, drive: &str) -> String {
    format!("file={},format=qcow2,if=none,id={drive},cache=writeback,discard=unmap", file.display())
}

/// The QEMU ids of a further interface's backend and device: `n` and `d` with its
/// tap's digits (QEMU ids must start with a letter).
pub fn nic_ids(interface_id: &str) -> (String, String) {
    let tap = kiln_agent_api::tap_name(interface_id);
    (format!("n{}", &tap[1..]), format!("d{}", &tap[1..]))
}

/// Whether a QEMU device id is a further interface's (see `nic_ids`).
pub fn is_nic_device(id: &str) -> bool {
    is_nic_id(id, 'd')
}

/// Whether a QEMU netdev id is a further interface's backend (see `nic_ids`).
pub fn is_nic_netdev(id: &str) -> bool {
    is_nic_id(id, 'n')
}

fn is_nic_id(id: &str, first: char) -> bool {
    id.len() == 15 && id.starts_with(first) && id[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The instance's MAC address.
pub fn mac(instance_id: &str) -> String {
    kiln_types::ids::instance_mac(instance_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_agent_api::{Disk, StorePath};

    fn spec(arch: Architecture) -> VmSpec {
        let file = |f: &str| StorePath::new(f).expect("a store path");
        VmSpec {
            instance_id: "i-0123456789abcdef0".parse().expect("id"),
            architecture: arch,
            vcpus: 2,
            memory_mib: 1024,
            kernel: Some(file("k/vmlinuz")),
            initrd: Some(file("k/initrd.img")),
            cmdline: Some("console=ttyS0 root=/dev/vda quiet".into()),
            tcg_tb_size_mib: None,
            disks: vec![Disk {
                volume_id: "vol-0123456789abcdef0".parse().expect("id"),
                file: file("root.qcow2"),
                below: vec![],
                settling: None,
                served: None,
            }],
            network: Network::User,
        }
    }

    fn place() -> Place<'static> {
        Place {
            vm_dir: Path::new("/d"),
            store: Path::new("/s"),
            pipe_program: Path::new("/usr/bin/kiln"),
            nbd_tls: None,
        }
    }

    /// A directory removed when dropped.
    struct Store(std::path::PathBuf);

    impl Store {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Store {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_served_volume_is_reached_through_the_hosts_relay_with_tls_over_its_own_copies_of_layers() {
        let root = std::env::temp_dir().join(format!("kiln-qemu-test-{}", std::process::id()));
        let store = Store(root.clone());
        let file = |f: &str| StorePath::new(f).expect("a store path");
        // The host has the middle layer and the one under it (which its copy names).
        std::fs::create_dir_all(root.join("snapshots")).expect("dir");
        std::fs::write(root.join("snapshots/snap-b.qcow2"), b"").expect("copy");
        std::fs::write(root.join("snapshots/snap-c.qcow2"), b"").expect("copy");
        let mut s = spec(Architecture::X86_64);
        s.disks[0].file = file("volumes/vol-0123456789abcdef0.qcow2");
        s.disks[0].below =
            vec![file("snapshots/snap-a.qcow2"), file("snapshots/snap-b.qcow2"), file("snapshots/snap-c.qcow2")];
        s.disks[0].served = Some(kiln_agent_api::Served {
            addr: "192.0.2.1:10809".parse().expect("addr"),
            export: "vol-0123456789abcdef0".parse().expect("id"),
        });
        let tls = Path::new("/s/agent/nbd-tls");
        let place = Place { nbd_tls: Some(tls), store: store.path(), ..place() };
        let joined = arguments(&s, Accel::Tcg, &place, &Tuning::default()).join(" ");
        let relay = store.path().join("nbd/192.0.2.1-10809.sock");
        let vol = &s.disks[0].volume_id;
        assert!(joined.contains("-object tls-creds-x509,id=kiln-nbd,dir=/s/agent/nbd-tls,endpoint=client"), "{joined}");
        let [a, b] = [file("snapshots/snap-a.qcow2"), file("snapshots/snap-b.qcow2")]
            .map(|f| kiln_agent_api::export_name(vol, &f));
        let args = arguments(&s, Accel::Tcg, &place, &Tuning::default());
        let nodes: Vec<serde_json::Value> = args
            .windows(2)
            .filter(|w| w[0] == "-blockdev")
            .map(|w| serde_json::from_str(&w[1]).expect("a node as JSON"))
            .collect();
        // The host's copy first (it names the rest of the chain), then the layer it
        // lacks, from the server, on it.
        assert_eq!(nodes.len(), 2, "{joined}");
        assert_eq!(nodes[0]["node-name"], format!("c{}", &b[1..]));
        assert_eq!(nodes[0]["file"]["filename"], store.path().join("snapshots/snap-b.qcow2").display().to_string());
        assert!(nodes[0].get("backing").is_none(), "{}", nodes[0]);
        assert_eq!(nodes[1]["node-name"], a);
        assert_eq!(nodes[1]["backing"], format!("c{}", &b[1..]));
        assert_eq!(nodes[1]["read-only"], true);
        assert_eq!(nodes[1]["file"]["export"], a);
        assert_eq!(nodes[1]["file"]["server"]["path"], relay.display().to_string());
        assert_eq!(nodes[1]["file"]["tls-creds"], "kiln-nbd");
        assert_eq!(nodes[1]["file"]["tls-hostname"], "192.0.2.1");
        assert!(
            joined.contains(&format!(
                "-drive driver=qcow2,file.driver=nbd,file.server.type=unix,file.server.path={},file.export={},\
                 file.tls-creds=kiln-nbd,file.tls-hostname=192.0.2.1,file.reconnect-delay=60,backing={a},if=none",
                relay.display(),
                kiln_agent_api::export_name(vol, &s.disks[0].file),
            )),
            "{joined}"
        );
        assert!(!joined.contains("snap-c"), "its copy names the rest: {joined}");
        // Without a copy of the base, the middle copy names a file this host lacks:
        // every layer comes from the server.
        std::fs::remove_file(root.join("snapshots/snap-c.qcow2")).expect("remove");
        let (nodes, _) = drive_options(&s.disks[0], store.path(), "v0");
        assert_eq!(nodes.len(), 3, "{nodes:?}");
        assert!(nodes.iter().all(|n| n["file"]["driver"] == "nbd"), "{nodes:?}");
        assert_eq!(nodes[0]["backing"], serde_json::Value::Null, "the base has nothing under it");
        assert_ne!(
            kiln_agent_api::export_name(vol, &file("snapshots/snap-a.qcow2")),
            kiln_agent_api::export_name(vol, &file("snapshots/snap-b.qcow2"))
        );
    }

    #[test]
    fn x86_command_line_has_the_types_hardware() {
        let a = arguments(&spec(Architecture::X86_64), Accel::Tcg, &place(), &Tuning::default());
        let joined = a.join(" ");
        assert!(joined.contains("-machine pc -accel tcg,tb-size=32"), "{joined}");
        assert!(joined.contains("virtio-balloon-pci,id=balloon0,free-page-reporting=on"));
        assert!(joined.contains("-smp 2 -m 1024M"));
        assert!(
            joined.contains("-kernel /s/k/vmlinuz -initrd /s/k/initrd.img -append console=ttyS0 root=/dev/vda quiet")
        );
        assert!(joined.contains("-drive file=/s/root.qcow2,format=qcow2,if=none,id=v0123456789abcdef0"));
        assert!(joined
            .contains("virtio-blk-pci,drive=v0123456789abcdef0,id=b0123456789abcdef0,serial=vol0123456789abcdef0"));
        assert!(joined.contains("-qmp unix:/d/qmp.sock,server=on,wait=off"));
        assert!(joined.contains("-pidfile /d/qemu.pid -daemonize"));
        assert!(joined.contains("guestfwd=tcp:169.254.169.254:80-cmd:/usr/bin/kiln pipe /d/imds.sock"));
        assert!(joined.contains("serial=ec2"), "{joined}");
        assert_eq!(program(Architecture::X86_64), "qemu-system-x86_64");
    }

    #[test]
    fn only_disk_boots_take_a_boot_index() {
        let direct = arguments(&spec(Architecture::X86_64), Accel::Tcg, &place(), &Tuning::default()).join(" ");
        assert!(!direct.contains("bootindex"), "QEMU refuses bootindex=0 beside -kernel");
        let mut s = spec(Architecture::X86_64);
        s.kernel = None;
        s.initrd = None;
        s.cmdline = None;
        let disk = arguments(&s, Accel::Tcg, &place(), &Tuning::default()).join(" ");
        assert!(disk.contains("bootindex=0"));
        s.architecture = Architecture::Arm64;
        assert!(arguments(&s, Accel::Tcg, &place(), &Tuning::default()).join(" ").contains(AARCH64_FIRMWARE));
    }

    #[test]
    fn further_interfaces_get_their_own_taps_and_hot_plug_ids() {
        let mut s = spec(Architecture::X86_64);
        let nic = kiln_agent_api::Nic { interface_id: "eni-0aaaabbbbccccdddd".into(), mac: "02:bb:bb:cc:cc:dd".into() };
        s.network = Network::Vpc { vpc_id: "vpc-1".into(), mac: "02:00:00:00:00:01".into(), nics: vec![nic] };
        let a = arguments(&s, Accel::Tcg, &place(), &Tuning::default()).join(" ");
        assert!(a.contains("tap,id=net0,ifname=t3456789abcdef0,"), "{a}");
        assert!(a.contains("tap,id=naabbbbccccdddd,ifname=taabbbbccccdddd,script=no"), "{a}");
        assert!(a.contains("virtio-net-pci,netdev=naabbbbccccdddd,mac=02:bb:bb:cc:cc:dd,id=daabbbbccccdddd"), "{a}");
        assert!(is_nic_device("daabbbbccccdddd") && is_nic_netdev("naabbbbccccdddd"));
        assert!(!is_nic_device("disk0") && !is_nic_netdev("net0"));
    }

    #[test]
    fn arm64_uses_virt_and_cortex() {
        let a = arguments(&spec(Architecture::Arm64), Accel::Tcg, &place(), &Tuning::default()).join(" ");
        assert!(a.contains("-machine virt -accel tcg,tb-size=32 -cpu cortex-a57"), "{a}");
        assert_eq!(program(Architecture::Arm64), "qemu-system-aarch64");
    }

    #[test]
    fn tuning_can_be_turned_off_and_kvm_takes_no_cache_size() {
        let old = Tuning { tb_size_mib: None, balloon: false };
        let a = arguments(&spec(Architecture::X86_64), Accel::Tcg, &place(), &old).join(" ");
        assert!(a.contains("-machine pc -accel tcg -cpu"), "{a}");
        assert!(!a.contains("balloon"), "{a}");
        let k = arguments(&spec(Architecture::X86_64), Accel::Kvm, &place(), &Tuning::default()).join(" ");
        assert!(k.contains("-accel kvm -cpu host"), "{k}");
    }

    #[test]
    fn an_images_own_cache_size_wins_unless_the_host_keeps_qemus_default() {
        let own = VmSpec { tcg_tb_size_mib: Some(16), ..spec(Architecture::X86_64) };
        let a = arguments(&own, Accel::Tcg, &place(), &Tuning::default()).join(" ");
        assert!(a.contains("-accel tcg,tb-size=16 -cpu"), "{a}");
        let old = Tuning { tb_size_mib: None, balloon: true };
        let a = arguments(&own, Accel::Tcg, &place(), &old).join(" ");
        assert!(a.contains("-accel tcg -cpu"), "{a}");
        let k = arguments(&own, Accel::Kvm, &place(), &Tuning::default()).join(" ");
        assert!(k.contains("-accel kvm -cpu host"), "{k}");
    }

    #[test]
    fn identity_looks_like_ec2() {
        let u = smbios_uuid("i-0123456789abcdef0");
        assert!(u.starts_with("ec2"));
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
        let m = mac("i-0123456789abcdef0");
        assert!(m.starts_with("02:"));
        assert_eq!(m.len(), 17);
    }
}
