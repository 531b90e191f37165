//! The scheduling priority of the store's background threads (today the checkpoint's).
//!
//! A checkpoint is up to a second of CPU that no request waits for. On a machine whose cores
//! the requests already keep busy, it takes one of them from the requests for that long. A
//! background thread that lowers its own priority (a higher nice value) still gets every idle
//! cycle. When requests are runnable, it gets a share of the CPU in proportion to its weight
//! instead of a core of its own. It still runs, and shares the caches with the requests: a
//! lower priority removes the worst stalls, not the work (BENCHMARKS.md, session 28). The idle
//! scheduling class ([`idle_current_thread`]) goes further: the thread gives a waking request
//! its core at once instead of at the end of its slice (session 31).

/// The highest nice value Linux has (the lowest priority).
pub const MAX_NICE: i32 = 19;

/// Lowers the calling thread's priority to nice `nice` (clamped to 0..=19; 0 leaves it as it
/// is). Linux only: there a thread id names one thread, elsewhere `setpriority` would apply
/// to the whole process. A failure is logged and otherwise ignored (the thread runs at the
/// process's priority, as before).
pub fn lower_current_thread(nice: i32, thread: &str) {
    let nice = nice.clamp(0, MAX_NICE);
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        match rustix::process::getpriority_process(Some(tid)) {
            // Never raise it: a process already started with a higher nice keeps it.
            Ok(current) if current >= nice => {}
            _ => {
                if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
                    tracing::warn!(thread, nice, cause = %e, "cannot lower a background thread's priority");
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}

/// Puts the calling thread in Linux's idle scheduling class (`SCHED_IDLE`): it runs on the
/// cycles no other thread wants, and a request thread that wakes up takes its core at once,
/// where a thread at nice 10 keeps the core to the end of its time slice, milliseconds that
/// showed in recommend's tail beside events (BENCHMARKS.md, session 31). Leaving the class
/// again needs privilege, so only a thread that can do with idle cycles may enter it: the
/// background checkpoint, whose work any other caller takes over (`checkpoint`). Returns
/// whether the thread is in the class now (never elsewhere than Linux).
pub fn idle_current_thread(thread: &str) -> bool {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        // The crate then also asks for nice 0, which an unprivileged thread at a higher
        // nice is refused after the class was set (and which the idle class ignores):
        // whether the class took is read back instead.
        let set = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
        let now = thread_schedule_policy();
        if matches!(now, Ok(p) if p == idle) {
            return true;
        }
        tracing::warn!(thread, cause = ?set.err(), "cannot put a background thread in the idle scheduling class");
        false
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = thread;
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(-100)
    }

    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        let before = nice_of_this_thread();
        let inside = std::thread::spawn(|| {
            lower_current_thread(7, "test");
            nice_of_this_thread()
        })
        .join()
        .unwrap_or(-100);
        assert_eq!(inside, before.max(7));
        assert_eq!(
            nice_of_this_thread(),
            before,
            "the spawning thread keeps its priority"
        );
    }

    #[test]
    fn a_thread_enters_the_idle_class_alone() {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        let policy = || thread_priority::thread_schedule_policy().ok();
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let before = policy();
        let inside = std::thread::spawn(move || {
            lower_current_thread(10, "test");
            (idle_current_thread("test"), policy())
        })
        .join()
        .unwrap_or((false, None));
        assert_eq!(inside, (true, Some(idle)));
        assert_eq!(policy(), before, "the spawning thread keeps its class");
        assert_ne!(before, Some(idle));
    }

    #[test]
    fn zero_leaves_the_priority_and_too_high_a_value_is_clamped() {
        let (zero, clamped) = std::thread::spawn(|| {
            let start = nice_of_this_thread();
            lower_current_thread(0, "test");
            let zero = nice_of_this_thread() == start;
            lower_current_thread(40, "test");
            (zero, nice_of_this_thread())
        })
        .join()
        .unwrap_or((false, -100));
        assert!(zero);
        assert_eq!(clamped, MAX_NICE);
    }
}
