//! Hedged calls: ask the best EL first and, when it has not answered within a short hedge
//! delay (or failed), the next one too; the first usable answer wins. A hung primary costs a
//! read the hedge delay, not the call's whole budget.

use crate::error::Answer;
use crate::nodes::Node;
use crate::rpc::ElAnswer;
use crate::upstream::{Reply, Timed};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Shortest hedge delay.
pub const MIN: Duration = Duration::from_millis(50);
/// Longest hedge delay.
pub const MAX: Duration = Duration::from_millis(300);

/// How long to wait for `node` before also asking the next EL: three times its usual answer
/// time, within [`MIN`] and [`MAX`] ([`MAX`] while it has no history).
pub fn hedge_after(node: &Node) -> Duration {
    node.health()
        .latency_ms
        .map_or(MAX, |ms| Duration::from_secs_f64(ms * 3.0 / 1e3))
        .clamp(MIN, MAX)
}

/// An EL's reply as eb's answer, or `None` if it is not a JSON-RPC answer.
pub fn answer_of(reply: &Reply) -> Option<Answer> {
    let Reply::Body(body) = reply else {
        return None;
    };
    serde_json::from_slice::<ElAnswer<'_>>(body)
        .ok()?
        .into_answer(body)
}

type Asked = std::pin::Pin<Box<dyn std::future::Future<Output = (Arc<Node>, Timed)> + Send>>;

fn ask(node: Arc<Node>, body: Bytes, timeout: Duration) -> Asked {
    Box::pin(async move {
        let timed = node.call(body, timeout).await;
        node.observe(&timed);
        (node, timed)
    })
}

/// Asks `candidates` (each EL with the body it gets) in order, hedging: the next one is asked
/// when the previous fails or after its hedge delay (at most `hedge_cap`). Returns the first
/// result, else the last JSON-RPC error, else why nobody answered within `budget`.
pub async fn first_answer(
    candidates: Vec<(Arc<Node>, Bytes)>,
    budget: Duration,
    hedge_cap: Duration,
) -> Result<Answer, String> {
    let deadline = Instant::now() + budget;
    let mut waiting = candidates.into_iter();
    let mut asked: FuturesUnordered<Asked> = FuturesUnordered::new();
    let mut error = None;
    let mut last = "no usable execution client".to_owned();
    let mut next_at = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_at || asked.is_empty() {
            match waiting.next() {
                Some((node, body)) => {
                    next_at = now + hedge_after(&node).min(hedge_cap);
                    asked.push(ask(node, body, deadline.saturating_duration_since(now)));
                }
                None if asked.is_empty() => break,
                None => next_at = deadline,
            }
        }
        tokio::select! {
            Some((node, timed)) = asked.next() => match answer_of(&timed.reply) {
                Some(Ok(result)) => return Ok(Ok(result)),
                Some(Err(e)) => { error = Some(e); next_at = Instant::now(); }
                None => {
                    last = format!("{}: {}", node.url, timed.reply.failure());
                    next_at = Instant::now();
                }
            },
            () = tokio::time::sleep_until(next_at.min(deadline)) => {
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    error.map(Err).ok_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::testing::{self, Scripted};

    /// Asks `els` in order with a 7 s budget; the answer and how long it took.
    async fn ask_in_order(els: &[Arc<Scripted>]) -> (Result<Answer, String>, Duration) {
        let nodes = testing::nodes(els, Duration::from_secs(8));
        let candidates = nodes
            .snapshot()
            .iter()
            .map(|n| (Arc::clone(n), Bytes::from_static(b"{}")))
            .collect();
        let start = Instant::now();
        let answer = first_answer(candidates, Duration::from_secs(7), MAX).await;
        (answer, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn the_hedge_delay_is_three_usual_times_within_its_bounds() {
        let el = |ms: u64| {
            let nodes = testing::nodes(&[testing::answering(Duration::ZERO, "1")], MAX);
            let node = Arc::clone(&nodes.snapshot()[0]);
            if ms > 0 {
                node.record_latency(&Timed {
                    reply: Reply::Timeout,
                    latency: Duration::from_millis(ms),
                });
            }
            hedge_after(&node)
        };
        assert_eq!(el(0), MAX, "no history yet");
        assert_eq!(el(40), Duration::from_millis(120));
        assert_eq!(el(5), MIN);
        assert_eq!(el(250), MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_first_el_costs_the_hedge_delay_only() {
        let els = [
            testing::answering(Duration::from_secs(3_600), r#""hung""#),
            testing::answering(Duration::from_millis(20), r#""second""#),
        ];
        let (answer, took) = ask_in_order(&els).await;
        assert_eq!(answer, Ok(Ok(Bytes::from_static(br#""second""#))));
        assert_eq!(took, MAX + Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn with_every_el_asked_the_slow_answers_are_still_waited_for() {
        let els = [
            testing::answering(Duration::from_millis(700), r#""first""#),
            testing::answering(Duration::from_secs(3_600), r#""hung""#),
        ];
        let (answer, took) = ask_in_order(&els).await;
        assert_eq!(answer, Ok(Ok(Bytes::from_static(br#""first""#))));
        assert_eq!(took, Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_asks_the_next_at_once_and_nobody_is_an_error() {
        let down = || {
            testing::scripted(Box::new(|_| {
                (
                    Duration::from_millis(5),
                    Reply::Unreachable("refused".into()),
                )
            }))
        };
        let (answer, took) = ask_in_order(&[down(), down()]).await;
        assert_eq!(
            took,
            Duration::from_millis(10),
            "one after the other, no waiting"
        );
        assert!(matches!(answer, Err(why) if why.ends_with("refused")));
    }
}
