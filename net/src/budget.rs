//! `queued.max.request.bytes`: the memory that request frames of all connections may
//! hold at once.
//!
//! Each frame is read into a buffer charged to the budget for as long as any part of
//! the request is alive. A reader whose frame does not fit waits, and the client's TCP
//! window closes behind it: the client is slowed, nothing is dropped.
//!
//! Buffers of large frames are kept, still charged, and reused rather than freed. A
//! freed buffer of megabytes tends to stay resident in the allocator's arenas, so
//! freeing them lets RSS creep past the budget; and a fresh one costs a page fault per
//! page on the produce path. A reader that cannot reuse one and finds no room evicts
//! them.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::{Notify, Semaphore};

use crate::frame::{self, FrameError};

/// Frames this large are read into kept buffers; smaller ones come and go through the
/// allocator, which serves them well.
const KEPT_FROM: usize = 64 << 10;

#[derive(Clone)]
pub struct RequestBudget {
    /// None: no bound.
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// Bytes not charged to a live frame or a kept buffer.
    bytes: Semaphore,
    /// The whole budget: a frame larger than it takes all of it and is read alone.
    max: usize,
    /// Buffers of finished large frames, with what each is charged.
    kept: Mutex<Vec<(Vec<u8>, usize)>>,
    /// Signalled when a buffer is kept, for readers waiting for bytes.
    returned: Notify,
}

impl RequestBudget {
    /// `queued_max_request_bytes` of -1 (or any value below 1) is no bound.
    pub fn new(queued_max_request_bytes: i64) -> Self {
        let inner = usize::try_from(queued_max_request_bytes)
            .ok()
            .filter(|&max| max > 0)
            .map(|max| {
                let max = max.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
                Arc::new(Inner {
                    bytes: Semaphore::new(max),
                    max,
                    kept: Mutex::new(Vec::new()),
                    returned: Notify::new(),
                })
            });
        RequestBudget { inner }
    }

    /// Reads one frame of at most `max` bytes once the budget has room for it;
    /// `Ok(None)` on a clean end of stream between frames.
    pub async fn read_frame<R: AsyncRead + Unpin>(
        &self,
        r: &mut R,
        max: usize,
    ) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = frame::read_size(r, max).await? else {
            return Ok(None);
        };
        let Some(inner) = &self.inner else {
            return Ok(Some(frame::read_body(r, size).await?.freeze()));
        };
        let mut charged = inner.clone().take(size).await;
        frame::read_into(r, &mut charged.buf, size).await?;
        Ok(Some(Bytes::from_owner(charged)))
    }
}

impl Inner {
    fn kept(&self) -> MutexGuard<'_, Vec<(Vec<u8>, usize)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer for a frame of `size` bytes, charged to the budget: a kept one that
    /// fits, or a new one once the budget has room (made first from the kept ones).
    async fn take(self: Arc<Self>, size: usize) -> Charged {
        let charge = size.min(self.max);
        // A frame larger than the budget is charged less than its size: its buffer
        // goes back to the allocator rather than being kept beyond the bound.
        let keep = (KEPT_FROM..=self.max).contains(&size);
        loop {
            {
                let mut kept = self.kept();
                if keep {
                    let fit = (kept.iter().enumerate())
                        .filter(|(_, (b, _))| b.capacity() >= size)
                        .min_by_key(|(_, (b, _))| b.capacity())
                        .map(|(i, _)| i);
                    if let Some(i) = fit {
                        let (mut buf, charge) = kept.swap_remove(i);
                        buf.clear();
                        return self.charged(buf, charge, keep);
                    }
                }
                while self.bytes.available_permits() < charge {
                    let Some((_, freed)) = kept.pop() else {
                        break;
                    };
                    self.bytes.add_permits(freed);
                }
            }
            tokio::select! {
                biased;
                // The semaphore is never closed; `charge` is at most `max`, a u32.
                permit = self.bytes.acquire_many(charge as u32) => {
                    if let Ok(p) = permit {
                        p.forget();
                    }
                    return self.charged(Vec::with_capacity(size), charge, keep);
                }
                // A buffer came back: it may fit, or may be evicted to make room.
                () = self.returned.notified() => {}
            }
        }
    }

    fn charged(self: &Arc<Self>, buf: Vec<u8>, charge: usize, keep: bool) -> Charged {
        Charged {
            buf,
            charge,
            keep,
            budget: self.clone(),
        }
    }

    fn give_back(&self, buf: Vec<u8>, charge: usize, keep: bool) {
        if keep {
            self.kept().push((buf, charge));
            self.returned.notify_one();
        } else {
            drop(buf);
            self.bytes.add_permits(charge);
        }
    }
}

/// A frame's buffer and its charge, given back when the last slice of it is dropped.
struct Charged {
    buf: Vec<u8>,
    charge: usize,
    keep: bool,
    budget: Arc<Inner>,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.budget.give_back(buf, self.charge, self.keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 2 << 20;

    fn frame(size: usize) -> Vec<u8> {
        let mut f = (size as i32).to_be_bytes().to_vec();
        f.resize(4 + size, 7);
        f
    }

    /// The next frame, which the test expects to be there.
    async fn next(budget: &RequestBudget, input: &mut &[u8]) -> Bytes {
        budget.read_frame(input, MAX).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_frame_waits_until_the_frames_before_it_are_dropped() {
        let budget = RequestBudget::new(300 << 10);
        let mut input: &[u8] = &[frame(200 << 10), frame(200 << 10)].concat();
        let first = next(&budget, &mut input).await;
        assert_eq!(first.len(), 200 << 10);
        let second = budget.read_frame(&mut input, MAX);
        tokio::pin!(second);
        assert!(futures::poll!(second.as_mut()).is_pending());
        // A slice keeps the frame charged.
        let slice = first.slice(10..20);
        drop(first);
        assert!(futures::poll!(second.as_mut()).is_pending());
        drop(slice);
        let second = second.await.unwrap().unwrap();
        assert!(second.iter().all(|&b| b == 7));
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_budget_is_read_alone() {
        let budget = RequestBudget::new(100 << 10);
        let mut input: &[u8] = &[frame(1 << 20), frame(10)].concat();
        let big = next(&budget, &mut input).await;
        assert_eq!(big.len(), 1 << 20);
        let small = budget.read_frame(&mut input, MAX);
        tokio::pin!(small);
        assert!(futures::poll!(small.as_mut()).is_pending());
        drop(big);
        assert_eq!(small.await.unwrap().unwrap().len(), 10);
    }

    #[tokio::test]
    async fn a_buffer_larger_than_the_budget_is_not_kept() {
        let budget = RequestBudget::new(100 << 10);
        let mut input: &[u8] = &frame(1 << 20);
        let big = next(&budget, &mut input).await;
        drop(big);
        // Kept, it would hold ten times the memory it is charged.
        let kept = budget.inner.as_ref().unwrap().kept().len();
        assert_eq!(kept, 0, "a buffer larger than the budget was kept");
    }

    #[tokio::test]
    async fn kept_buffers_are_reused_and_given_up_for_a_waiting_reader() {
        let budget = RequestBudget::new(300 << 10);
        let mut input: &[u8] = &[frame(200 << 10), frame(150 << 10), frame(250 << 10)].concat();
        let first = next(&budget, &mut input).await;
        let at = first.as_ptr();
        drop(first);
        // Fits in the kept buffer of the first frame: the same memory, no wait.
        let second = next(&budget, &mut input).await;
        assert_eq!(second.as_ptr(), at);
        drop(second);
        // Needs more than the kept buffer: it is evicted to make room.
        let third = next(&budget, &mut input).await;
        assert_eq!(third.len(), 250 << 10);
    }
}
