//! Keeping the machine steady under a benchmark: pinning to cores, keeping
//! idle cores awake, and what the guest's halt polling is set to.

use super::ROLE;
use super::processes::dies_with_bench;
use std::process::{Child, Command};

/// Pins this process, and so every process it starts, to the CPUs listed in
/// `BENCH_CPUS` (such as `0`, or `0,1`); returns the list. With every process
/// on one core, a request's hops between the load, the proxy and the mock
/// never wait for an idle core to wake (on a VM, tens of µs a hop), which
/// shows the work each target does apart from the machine's wake-up cost.
pub(crate) fn pin_from_env() -> Option<String> {
    let list = std::env::var("BENCH_CPUS").ok()?;
    // SAFETY: `cpu_set_t` is plain data that CPU_ZERO/CPU_SET initialise;
    // `sched_setaffinity(0, ..)` affects only the calling thread, which is
    // the only one when `main` calls this, and children inherit it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for cpu in list.split(',') {
            let cpu: usize = cpu
                .trim()
                .parse()
                .expect("BENCH_CPUS: CPU numbers, comma-separated");
            libc::CPU_SET(cpu, &mut set);
        }
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(
            libc::sched_setaffinity(0, size, &set),
            0,
            "BENCH_CPUS: {}",
            std::io::Error::last_os_error()
        );
    }
    Some(list)
}

/// With `BENCH_AWAKE=1`, one lowest-priority spinning process per core the
/// bench may use, for the length of the run.
///
/// On a VM, a core with nothing to run halts, and the request that wakes it
/// runs several times slower for its first few hundred µs (measured with
/// timestamps inside the gateway; the hypervisor rescheduling the virtual
/// CPU is the likely cause). Streams leave the cores idle between chunks,
/// so this decides much of the time to the first chunk. The spinners
/// (nice 19) give way to any real work at once but keep the virtual CPUs
/// from halting, which separates what each target costs from what the
/// machine's idle costs.
pub(crate) struct Awake(Vec<Child>);

impl Awake {
    pub(crate) fn from_env() -> Option<Awake> {
        if std::env::var("BENCH_AWAKE").ok()? != "1" {
            return None;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let spinners = (0..cores)
            .map(|_| {
                let mut command = Command::new(std::env::current_exe().unwrap());
                dies_with_bench(command.env(ROLE, "spinner"))
                    .spawn()
                    .unwrap()
            })
            .collect();
        Some(Awake(spinners))
    }
}

impl Drop for Awake {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long an idle core of this VM polls before it halts, when the kernel
/// runs as a KVM guest with `cpuidle-haltpoll`. At 0 every idle core halts,
/// and the request that wakes it pays for that (see the README); the
/// report names the setting, since it moves every latency in it.
pub(crate) fn guest_halt_poll_ns() -> Option<u64> {
    std::fs::read_to_string("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The spinner role: the lowest priority, then busy until the bench ends.
pub(crate) fn spin() -> ! {
    // SAFETY: `nice` only changes this process's scheduling priority.
    unsafe { libc::nice(19) };
    loop {
        std::hint::spin_loop();
    }
}
