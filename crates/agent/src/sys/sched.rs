//! A latency hint for the agent's threads: short scheduler slices.
//!
//! On a guest whose CPUs are busy, a woken agent thread waited behind the running
//! program for the rest of that program's slice (1.4 ms here, more with more CPUs):
//! guest-ping took 50 µs p50 and 1.7–2.8 ms p99 with two CPU hogs on this 2-CPU
//! machine. Since Linux 6.12 a task can ask for a shorter slice
//! (`sched_attr.sched_runtime` under SCHED_OTHER), and a woken task with a shorter
//! slice preempts one with a longer slice; with 0.1 ms slices the same pings took
//! 16 µs p50 and 27–40 µs p99. The agent's CPU share is unchanged (that is what nice
//! sets): its threads only get the CPU sooner when they wake, and give it back sooner.
//! Older kernels report no slice, and the agent then changes nothing.
//!
//! `SCHED_FLAG_RESET_ON_FORK` goes with it, so every thread and process started from
//! such a thread starts with the default slice: the programs guest-exec runs are
//! scheduled as they would be without the agent, and a new agent thread asks for
//! itself. Reset-on-fork would also give children of a negative-nice thread nice 0,
//! so the hint is only taken by a thread with the default policy and a nice of 0 or
//! more (an administrator's real-time policy, negative nice or shorter slice is left
//! alone).

/// The slice asked for: the kernel's minimum.
pub const SLICE_NS: u64 = 100_000;

const SCHED_OTHER: u32 = 0;
const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;

/// `struct sched_attr` as of Linux 3.14 (`SCHED_ATTR_SIZE_VER0`, 48 bytes).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// The calling thread's scheduling attributes.
fn get() -> Option<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as libc::c_uint;
    // SAFETY: sched_getattr writes at most `size` bytes into `attr`, which has them.
    let rc = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) };
    (rc == 0).then_some(attr)
}

/// Whether a thread scheduled as `attr` takes the hint (see the module text).
fn takes_hint(attr: &SchedAttr) -> bool {
    attr.sched_policy == SCHED_OTHER
        && attr.sched_nice >= 0
        && attr.sched_flags & SCHED_FLAG_RESET_ON_FORK == 0
        && attr.sched_runtime > SLICE_NS
}

/// Asks for [`SLICE_NS`] slices for the calling thread, with reset-on-fork. Returns
/// whether the kernel took it; a refusal (seccomp, an old kernel without
/// `sched_setattr`) leaves the thread as it was.
pub fn prefer_short_slices() -> bool {
    let Some(attr) = get() else {
        return false;
    };
    if !takes_hint(&attr) {
        return false;
    }
    let want = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: SCHED_OTHER,
        sched_flags: SCHED_FLAG_RESET_ON_FORK,
        sched_nice: attr.sched_nice,
        sched_runtime: SLICE_NS,
        ..SchedAttr::default()
    };
    // SAFETY: sched_setattr reads `want.size` bytes of `want` for the calling thread.
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &want, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_default_scheduling_takes_the_hint() {
        let default = SchedAttr {
            size: 48,
            sched_runtime: 1_400_000,
            ..SchedAttr::default()
        };
        assert!(takes_hint(&default));
        assert!(takes_hint(&SchedAttr {
            sched_nice: 10,
            ..default
        }));
        for other in [
            SchedAttr {
                sched_nice: -5,
                ..default
            },
            SchedAttr {
                sched_policy: 1, // SCHED_FIFO
                ..default
            },
            SchedAttr {
                sched_runtime: SLICE_NS,
                ..default
            },
            SchedAttr {
                sched_flags: SCHED_FLAG_RESET_ON_FORK,
                ..default
            },
        ] {
            assert!(!takes_hint(&other), "{other:?}");
        }
    }

    #[test]
    fn a_thread_gets_the_slice_and_its_children_the_default() {
        std::thread::spawn(|| {
            let before = get().expect("sched_getattr");
            if !takes_hint(&before) || !prefer_short_slices() {
                return; // a kernel or scheduling where the hint does not apply
            }
            let now = get().unwrap();
            assert_eq!(now.sched_flags & SCHED_FLAG_RESET_ON_FORK, 1);
            assert_eq!(now.sched_nice, before.sched_nice);
            assert_eq!(now.sched_runtime, SLICE_NS);
            // A thread started from it has the default again (and no flag).
            let child = std::thread::spawn(|| get().unwrap()).join().unwrap();
            assert_eq!(child.sched_runtime, before.sched_runtime);
            assert_eq!(child.sched_flags & SCHED_FLAG_RESET_ON_FORK, 0);
        })
        .join()
        .unwrap();
    }
}
