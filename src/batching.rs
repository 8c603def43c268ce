//! Dynamic batching: calls from many threads (or async tasks) queued and merged into one packed
//! forward pass, so concurrent requests cost what their real tokens cost together.
//!
//! A [`Batcher`] is a generic queue in front of one [`BatchTask`] (the encoder, a cross-encoder,
//! a reader: each implements the trait beside its own type), and owns one worker thread.
//! [`Batcher::submit`] queues already tokenized inputs with the call's settings and returns a
//! [`Pending`] at once (a future, or [`Pending::wait`] to block). The worker takes the oldest
//! call, waits at most `max_wait` for company while the batch holds fewer tokens than the
//! task's pass holds ([`BatchTask::max_batch_tokens`]), merges the queued calls that share its
//! pass ([`BatchTask::PassKey`]), runs them as one call, and hands each caller its rows after
//! its own settings ([`BatchTask::finish`], as text-embeddings-inference applies per-request
//! settings after the batched pass). A row never depends on what it was batched with: the
//! encoder's vectors are bitwise the same alone or packed with others.
//!
//! The queue is bounded by tokens ([`BatchLimits::max_queued_tokens`]): past it `submit` fails
//! with [`Error::Overloaded`] instead of queueing. Dropping a [`Pending`] (a client that went
//! away) withdraws its call if it has not started.

use crate::error::{Error, Result};
use crate::tokenizer::Tokenized;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A model a [`Batcher`] can run: tokenized inputs in, one output per input.
pub trait BatchTask: Send + Sync + 'static {
    /// One call's settings (how it wants its inputs encoded).
    type Settings: Send + 'static;
    /// The part of the settings that changes the pass: calls with equal keys share one.
    type PassKey: Clone + PartialEq + Send + 'static;
    /// One input's result.
    type Output: Send + 'static;
    /// The pass key of a call's settings.
    fn pass_key(settings: &Self::Settings) -> Self::PassKey;
    /// The most tokens one merged call may hold (the task's own bound on a pass).
    fn max_batch_tokens(&self) -> usize;
    /// Runs `inputs` (one or more calls merged) as one call, outputs in input order.
    fn run(&self, key: &Self::PassKey, inputs: &[Tokenized]) -> Result<Vec<Self::Output>>;
    /// One call's outputs of the shared run, finished with that call's own settings.
    fn finish(
        &self,
        settings: &Self::Settings,
        outputs: Vec<Self::Output>,
    ) -> Result<Vec<Self::Output>>;
}

/// The default [`BatchLimits::max_queued_tokens`]: 32 passes of the default size.
pub const DEFAULT_MAX_QUEUED_TOKENS: usize = 32 * crate::model::DEFAULT_MAX_BATCH_TOKENS;

/// How a [`Batcher`] waits for company and bounds its queue (the size of each merged pass is
/// the task's: [`BatchTask::max_batch_tokens`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Longest the oldest call waits for others to join it while the batch is not full.
    pub max_wait: Duration,
    /// Most tokens waiting in the queue; a call that would pass it is refused.
    pub max_queued_tokens: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_wait: Duration::from_micros(100),
            max_queued_tokens: DEFAULT_MAX_QUEUED_TOKENS,
        }
    }
}

/// One finished call: its outputs and where its time went.
#[derive(Debug)]
pub struct Done<T> {
    pub outputs: Vec<T>,
    /// From `submit` to the start of its pass.
    pub queued: Duration,
    /// The pass it ran in.
    pub compute: Duration,
    /// Inputs in that pass (this call's and the others merged with it).
    pub batch_inputs: usize,
}

/// Upper bounds of the batch-size histogram's buckets (inputs per pass); the last is +Inf.
pub const BATCH_SIZE_BUCKETS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Counters since the batcher started, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Passes run.
    pub batches: u64,
    /// Inputs and tokens run.
    pub inputs: u64,
    pub tokens: u64,
    /// Calls withdrawn before they ran (their `Pending` dropped).
    pub withdrawn: u64,
    /// Calls refused because the queue was full.
    pub refused: u64,
    /// Time spent running passes, in microseconds.
    pub compute_micros: u64,
    /// Passes by inputs per pass: `counts[i]` passes had at most `BATCH_SIZE_BUCKETS[i]` inputs
    /// (and more than the bucket before); the last count is the rest.
    pub batch_size_counts: [u64; BATCH_SIZE_BUCKETS.len() + 1],
    /// Calls and tokens waiting now.
    pub queued_calls: usize,
    pub queued_tokens: usize,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    inputs: AtomicU64,
    tokens: AtomicU64,
    withdrawn: AtomicU64,
    refused: AtomicU64,
    compute_micros: AtomicU64,
    batch_size_counts: [AtomicU64; BATCH_SIZE_BUCKETS.len() + 1],
}

/// The queue and the worker share this.
struct Shared<T: BatchTask> {
    task: Arc<T>,
    limits: BatchLimits,
    queue: Mutex<Queue<T>>,
    /// Signalled when a call arrives or the batcher closes.
    arrived: Condvar,
    counters: Counters,
}

struct Queue<T: BatchTask> {
    calls: VecDeque<Call<T>>,
    tokens: usize,
    closed: bool,
}

struct Call<T: BatchTask> {
    settings: T::Settings,
    key: T::PassKey,
    inputs: Vec<Tokenized>,
    tokens: usize,
    submitted: Instant,
    slot: Arc<Slot<T::Output>>,
}

/// Where the worker puts a call's result and its caller finds it.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    done: Condvar,
}

struct SlotState<T> {
    result: Option<Result<Done<T>>>,
    waker: Option<Waker>,
    /// The caller went away: skip the call if it has not started.
    withdrawn: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these states half-updated (each update is one step).
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Slot<T> {
    fn new() -> Self {
        Slot {
            state: Mutex::new(SlotState {
                result: None,
                waker: None,
                withdrawn: false,
            }),
            done: Condvar::new(),
        }
    }

    fn is_withdrawn(&self) -> bool {
        lock(&self.state).withdrawn
    }

    fn finish(&self, result: Result<Done<T>>) {
        let waker = {
            let mut state = lock(&self.state);
            state.result = Some(result);
            state.waker.take()
        };
        self.done.notify_all();
        // Woken outside the lock: a waker that polls at once must find it free.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A queued call: await it, or [`Pending::wait`]. Dropping it withdraws the call.
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Pending<T> {
    /// Blocks until the call has run.
    pub fn wait(self) -> Result<Done<T>> {
        let mut state = lock(&self.slot.state);
        loop {
            if let Some(result) = state.result.take() {
                return result;
            }
            state = self
                .slot
                .done
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<Done<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.slot.state);
        match state.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        lock(&self.slot.state).withdrawn = true;
    }
}

/// A dynamic-batching queue in front of one model, with its worker thread.
pub struct Batcher<T: BatchTask> {
    shared: Arc<Shared<T>>,
    worker: Option<JoinHandle<()>>,
}

impl<T: BatchTask> Batcher<T> {
    /// Starts the worker thread.
    pub fn new(task: Arc<T>, limits: BatchLimits) -> Result<Self> {
        let shared = Arc::new(Shared {
            task,
            limits,
            queue: Mutex::new(Queue {
                calls: VecDeque::new(),
                tokens: 0,
                closed: false,
            }),
            arrived: Condvar::new(),
            counters: Counters::default(),
        });
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("densa-batcher".into())
            .spawn(move || work(&worker_shared))
            .map_err(|e| Error::Internal(format!("cannot start the batching thread: {e}")))?;
        Ok(Batcher {
            shared,
            worker: Some(worker),
        })
    }

    /// The model behind the queue.
    pub fn task(&self) -> &Arc<T> {
        &self.shared.task
    }

    /// The queue's limits.
    pub fn limits(&self) -> BatchLimits {
        self.shared.limits
    }

    /// Queues `inputs` (tokenized for `settings`) as one call. Fails at once with
    /// [`Error::Overloaded`] when the queue cannot take its tokens, [`Error::ShutDown`] after
    /// [`Batcher::close`]. An empty call finishes at once with no outputs.
    pub fn submit(
        &self,
        settings: T::Settings,
        inputs: Vec<Tokenized>,
    ) -> Result<Pending<T::Output>> {
        let slot = Arc::new(Slot::new());
        if inputs.is_empty() {
            slot.finish(Ok(Done {
                outputs: Vec::new(),
                queued: Duration::ZERO,
                compute: Duration::ZERO,
                batch_inputs: 0,
            }));
            return Ok(Pending { slot });
        }
        let tokens = inputs.iter().map(|t| t.ids.len()).sum();
        let mut queue = lock(&self.shared.queue);
        if queue.closed {
            return Err(Error::ShutDown);
        }
        let limit = self.shared.limits.max_queued_tokens;
        // Calls whose callers went away hold no room.
        if queue.tokens + tokens > limit {
            drop_withdrawn(&self.shared, &mut queue);
        }
        // An empty queue takes any call, so that one call over the limit is not refused forever.
        if !queue.calls.is_empty() && queue.tokens + tokens > limit {
            self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Overloaded {
                queued_tokens: queue.tokens,
                tokens,
                limit,
            });
        }
        queue.tokens += tokens;
        queue.calls.push_back(Call {
            key: T::pass_key(&settings),
            settings,
            inputs,
            tokens,
            submitted: Instant::now(),
            slot: slot.clone(),
        });
        drop(queue);
        self.shared.arrived.notify_one();
        Ok(Pending { slot })
    }

    /// The counters so far and the queue now.
    pub fn stats(&self) -> BatchStats {
        let c = &self.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let queue = lock(&self.shared.queue);
        BatchStats {
            batches: load(&c.batches),
            inputs: load(&c.inputs),
            tokens: load(&c.tokens),
            withdrawn: load(&c.withdrawn),
            refused: load(&c.refused),
            compute_micros: load(&c.compute_micros),
            batch_size_counts: std::array::from_fn(|i| load(&c.batch_size_counts[i])),
            queued_calls: queue.calls.len(),
            queued_tokens: queue.tokens,
        }
    }

    /// Stops taking calls; the worker finishes every call already queued, then exits.
    pub fn close(&self) {
        lock(&self.shared.queue).closed = true;
        self.shared.arrived.notify_all();
    }
}

impl<T: BatchTask> Drop for Batcher<T> {
    fn drop(&mut self) {
        self.close();
        if let Some(worker) = self.worker.take() {
            // The worker only exits through the loop's end; a panic in a task is already
            // reported to its callers as a dropped result.
            let _ = worker.join();
        }
    }
}

/// The worker: take a batch, run it, hand out the rows; until closed and drained.
fn work<T: BatchTask>(shared: &Shared<T>) {
    while let Some(batch) = next_batch(shared) {
        run_batch(shared, batch);
    }
}

/// The next calls to run together (the oldest live call and the queued calls of its pass key,
/// up to the task's `max_batch_tokens`), or `None` once closed and empty.
fn next_batch<T: BatchTask>(shared: &Shared<T>) -> Option<Vec<Call<T>>> {
    let (limits, max_batch_tokens) = (shared.limits, shared.task.max_batch_tokens());
    let mut queue = lock(&shared.queue);
    loop {
        drop_withdrawn(shared, &mut queue);
        let Some(first) = queue.calls.front() else {
            if queue.closed {
                return None;
            }
            queue = shared
                .arrived
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
            continue;
        };
        // Wait for company while the batch is not full, at most max_wait after the oldest
        // call arrived (none once closing: finish what is there).
        let deadline = first.submitted + limits.max_wait;
        let key = first.key.clone();
        let ready: usize = queue
            .calls
            .iter()
            .filter(|c| c.key == key)
            .map(|c| c.tokens)
            .sum();
        let now = Instant::now();
        if ready < max_batch_tokens && now < deadline && !queue.closed {
            queue = shared
                .arrived
                .wait_timeout(queue, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        let mut batch = Vec::new();
        let mut tokens = 0;
        let mut i = 0;
        while i < queue.calls.len() {
            let call = &queue.calls[i];
            let fits = batch.is_empty() || tokens + call.tokens <= max_batch_tokens;
            if call.key == key && fits {
                tokens += call.tokens;
                let call = queue.calls.remove(i).expect("index checked");
                queue.tokens -= call.tokens;
                batch.push(call);
            } else {
                i += 1;
            }
        }
        return Some(batch);
    }
}

/// Removes calls whose callers went away.
fn drop_withdrawn<T: BatchTask>(shared: &Shared<T>, queue: &mut Queue<T>) {
    let before = queue.calls.len();
    let mut freed = 0;
    queue.calls.retain(|c| {
        let keep = !c.slot.is_withdrawn();
        if !keep {
            freed += c.tokens;
        }
        keep
    });
    queue.tokens -= freed;
    let withdrawn = (before - queue.calls.len()) as u64;
    shared
        .counters
        .withdrawn
        .fetch_add(withdrawn, Ordering::Relaxed);
}

/// Runs one batch as one call and gives each caller its rows, finished with its own
/// settings. If the merged call fails, each call is run alone, so that one caller's bad input
/// fails only that caller.
fn run_batch<T: BatchTask>(shared: &Shared<T>, mut batch: Vec<Call<T>>) {
    let started = Instant::now();
    let counts: Vec<usize> = batch.iter().map(|c| c.inputs.len()).collect();
    let inputs: Vec<Tokenized> = batch
        .iter_mut()
        .flat_map(|c| std::mem::take(&mut c.inputs))
        .collect();
    let key = batch[0].key.clone();
    let merged = guarded(inputs.len(), || shared.task.run(&key, &inputs));
    let compute = started.elapsed();
    // A failed merged pass is not counted: its calls are counted when rerun alone.
    if merged.is_ok() || batch.len() == 1 {
        record(shared, &batch, inputs.len(), compute);
    }
    // A call's rows of a run, finished with its own settings, handed to its caller.
    let hand_out = |call: &Call<T>, rows: Result<Vec<T::Output>>, compute, batch_inputs| {
        let finished =
            rows.and_then(|rows| guarded(rows.len(), || shared.task.finish(&call.settings, rows)));
        call.slot.finish(finished.map(|outputs| Done {
            outputs,
            queued: started.saturating_duration_since(call.submitted),
            compute,
            batch_inputs,
        }));
    };
    match merged {
        Ok(outputs) => {
            let mut outputs = outputs.into_iter();
            for (call, &n) in batch.iter().zip(&counts) {
                let rows = outputs.by_ref().take(n).collect();
                hand_out(call, Ok(rows), compute, inputs.len());
            }
        }
        Err(error) if batch.len() == 1 => batch[0].slot.finish(Err(error)),
        Err(_) => {
            let mut at = 0;
            for (call, &n) in batch.iter().zip(&counts) {
                let alone = Instant::now();
                let calls_inputs = &inputs[at..at + n];
                let rows = guarded(n, || shared.task.run(&call.key, calls_inputs));
                at += n;
                let compute = alone.elapsed();
                record(shared, std::slice::from_ref(call), n, compute);
                hand_out(call, rows, compute, n);
            }
        }
    }
}

/// `step`'s outputs, checked to be `n`, a panic turned into an error (the worker must outlive
/// any one call).
fn guarded<O>(n: usize, step: impl FnOnce() -> Result<Vec<O>>) -> Result<Vec<O>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
        Ok(Ok(outputs)) if outputs.len() == n => Ok(outputs),
        Ok(Ok(outputs)) => Err(Error::Internal(format!(
            "{} outputs for {n} inputs",
            outputs.len()
        ))),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Error::Internal("the model panicked on this batch".into())),
    }
}

/// Counts one pass of `calls` (`inputs` inputs in all).
fn record<T: BatchTask>(shared: &Shared<T>, calls: &[Call<T>], inputs: usize, compute: Duration) {
    let c = &shared.counters;
    let tokens: usize = calls.iter().map(|call| call.tokens).sum();
    c.batches.fetch_add(1, Ordering::Relaxed);
    c.inputs.fetch_add(inputs as u64, Ordering::Relaxed);
    c.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
    c.compute_micros
        .fetch_add(compute.as_micros() as u64, Ordering::Relaxed);
    let bucket = BATCH_SIZE_BUCKETS
        .iter()
        .position(|&b| inputs <= b)
        .unwrap_or(BATCH_SIZE_BUCKETS.len());
    c.batch_size_counts[bucket].fetch_add(1, Ordering::Relaxed);
}
