//! How many jobs a local backend runs at once.
//!
//! Some servers take one job at a time and answer 503 to a second (sd.cpp
//! does). A backend's `concurrency` says so, and its jobs then wait here in
//! arrival order, with their deadline, as they wait for GPU memory. A backend
//! whose fragment does not say is not trusted blindly: when it answers 503
//! while the gateway has other jobs running on it, its limit is lowered to
//! the jobs it was running, and the refused request waits for a slot and is
//! sent again instead of failing ([`JobSlots::learn_busy`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limit of a backend whose fragment sets none: in effect none, until it
/// answers busy.
pub const UNSTATED: u32 = 4_096;

/// One backend's job slots.
pub struct JobSlots {
    semaphore: Arc<Semaphore>,
    /// Jobs it may run at once: configured, learned, or [`UNSTATED`].
    limit: AtomicU32,
    /// Jobs running now (holding a slot).
    running: AtomicU32,
    /// Slots to retire as jobs end, after the limit was lowered while they
    /// were all taken.
    debt: AtomicU32,
}

/// A running job's slot; dropping it frees the slot (or retires it).
pub struct Job {
    slots: Arc<JobSlots>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Job {
    fn drop(&mut self) {
        self.slots.running.fetch_sub(1, Ordering::AcqRel);
        if self.slots.take_debt()
            && let Some(permit) = self.permit.take()
        {
            permit.forget();
        }
    }
}

impl JobSlots {
    pub fn new(concurrency: Option<u32>) -> Arc<Self> {
        let limit = concurrency.unwrap_or(UNSTATED).max(1);
        Arc::new(JobSlots {
            semaphore: Arc::new(Semaphore::new(limit as usize)),
            limit: AtomicU32::new(limit),
            running: AtomicU32::new(0),
            debt: AtomicU32::new(0),
        })
    }

    /// A slot, in arrival order (tokio's semaphore is fair), or `None` when
    /// `deadline` passes first.
    pub async fn take(self: &Arc<Self>, deadline: tokio::time::Instant) -> Option<Job> {
        let acquire = self.semaphore.clone().acquire_owned();
        let permit = tokio::time::timeout_at(deadline, acquire)
            .await
            .ok()?
            .ok()?;
        self.running.fetch_add(1, Ordering::AcqRel);
        Some(Job {
            slots: self.clone(),
            permit: Some(permit),
        })
    }

    /// The backend answered busy to a job that holds a slot. When other jobs
    /// of the gateway's were running on it, it runs no more than those: the
    /// limit comes down to them and the caller should wait for a slot and
    /// try again (true). Alone, the job was refused for another reason.
    pub fn learn_busy(&self) -> bool {
        let others = self.running.load(Ordering::Acquire).saturating_sub(1);
        if others == 0 {
            return false;
        }
        let old = self.limit.fetch_min(others, Ordering::AcqRel);
        if others < old {
            let cut = old - others;
            let retired = self.semaphore.forget_permits(cut as usize) as u32;
            self.debt.fetch_add(cut - retired, Ordering::AcqRel);
        }
        true
    }

    /// Jobs it may run at once, when that is known.
    pub fn limit(&self) -> Option<u32> {
        let limit = self.limit.load(Ordering::Acquire);
        (limit < UNSTATED).then_some(limit)
    }

    /// Slots free now.
    pub fn free(&self) -> u32 {
        let limit = self.limit.load(Ordering::Acquire);
        limit.saturating_sub(self.running.load(Ordering::Acquire))
    }

    fn take_debt(&self) -> bool {
        self.debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test]
    async fn a_configured_limit_holds_the_next_job_back() {
        let slots = JobSlots::new(Some(1));
        let first = slots.take(soon()).await.unwrap();
        assert!(slots.take(soon()).await.is_none(), "a second job got in");
        drop(first);
        assert!(slots.take(soon()).await.is_some());
    }

    #[tokio::test]
    async fn a_busy_answer_lowers_an_unstated_limit_to_the_jobs_running() {
        let slots = JobSlots::new(None);
        assert_eq!(slots.limit(), None);
        let running = slots.take(soon()).await.unwrap();
        let refused = slots.take(soon()).await.unwrap();
        let third = slots.take(soon()).await.unwrap();
        // Two others were running when the third was refused: at most two.
        assert!(slots.learn_busy());
        drop(third);
        assert_eq!(slots.limit(), Some(2));
        // The second is refused too, with one other running: one at a time.
        assert!(slots.learn_busy());
        drop(refused);
        assert_eq!(slots.limit(), Some(1));
        assert!(slots.take(soon()).await.is_none(), "one job at a time");
        drop(running);
        let alone = slots.take(soon()).await.unwrap();
        assert!(
            !slots.learn_busy(),
            "busy with nothing of ours: nothing learned"
        );
        assert_eq!(slots.limit(), Some(1));
        drop(alone);
        assert_eq!(slots.free(), 1);
    }
}
