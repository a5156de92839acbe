//! The parked-query executor: time per query for a batch of 256 queries that each
//! park once and are woken from the executor's own thread (forward's usual case: the
//! worker reads the upstream reply), then finish. Covers spawn, two polls, the wake and
//! the slot's reuse; once with a small task and once with a task that also fills 1.6 KB
//! of state per query (a forwarded query's future is that large; the fill itself is most
//! of that case's extra time, as no future is copied per query).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ringdns::server::parked::{Inbox, Parked};

const BATCH: usize = 256;

/// Parks once (handing its waker to `wakers`), then finishes.
fn query(wakers: Rc<RefCell<Vec<Waker>>>) -> impl Future<Output = ()> {
    let mut parked = false;
    std::future::poll_fn(move |cx| {
        if parked {
            Poll::Ready(())
        } else {
            parked = true;
            wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    })
}

type Wakers = Rc<RefCell<Vec<Waker>>>;

/// A slot's resident task: one `query` per job.
async fn small(inbox: Rc<Inbox<Wakers>>) {
    loop {
        let w = inbox.next().await;
        query(w).await;
    }
}

/// As `small`, with 1.6 KB of state held across the park.
async fn large(inbox: Rc<Inbox<Wakers>>) {
    loop {
        let w = inbox.next().await;
        let mut pad = [0u8; 1600];
        pad[0] = 1;
        query(w).await;
        std::hint::black_box(&mut pad);
    }
}

/// One batch: `BATCH` queries spawned, parked, woken on this thread and finished.
fn round<F: Future<Output = ()>>(
    p: &mut Parked<Wakers, F>,
    wakers: &Wakers,
    task: fn(Rc<Inbox<Wakers>>) -> F,
) {
    for _ in 0..BATCH {
        p.spawn(Rc::clone(wakers), task);
    }
    p.run();
    for w in wakers.borrow_mut().drain(..) {
        w.wake();
    }
    p.run();
    assert_eq!(p.running(), 0);
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parked");
    g.throughput(Throughput::Elements(BATCH as u64));
    let wakers = Rc::new(RefCell::new(Vec::with_capacity(BATCH)));
    let mut p = Parked::new();
    g.bench_function("spawn, park, wake on own thread, finish (per 256)", |b| {
        b.iter_batched(
            || (),
            |()| round(&mut p, &wakers, small),
            BatchSize::SmallInput,
        );
    });
    let mut p = Parked::new();
    g.bench_function("the same, 1.6 KB of task state (per 256)", |b| {
        b.iter_batched(
            || (),
            |()| round(&mut p, &wakers, large),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
