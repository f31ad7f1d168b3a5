//! The straggler deadline: how long a verdict the answers in hand already give waits for the
//! ELs that have not answered, before they are cut (counted missing; their calls still run and
//! a later answer is a late vote).
//!
//! `auto` waits until twice the EL's recent answer time for state-changing calls, at least
//! [`FLOOR`] and at most [`CAP`] past the moment the verdict became available; an EL whose
//! usual time is beyond the cap would not make it anyway and is cut as soon as the others
//! decide, as a hung one is (it still gets every call, and its answers, late, keep its usual
//! time current: once that is back under the cap it is waited for again). Why these: a
//! validator attests 4 s into its slot and blocks arrive 1–3 s in, so the whole answer must fit
//! in about a second; healthy ELs answer newPayload in tens to a few hundred milliseconds, so
//! twice an EL's own typical time lets a consistently slower client (a Besu beside a Reth) vote
//! every time, the floor absorbs jitter for ELs without history, and the cap bounds what one
//! stuck EL can cost.

use std::str::FromStr;
use std::time::Duration;

/// Least extra time `auto` gives a straggler past the verdict.
pub const FLOOR: Duration = Duration::from_millis(200);
/// Most extra time `auto` gives a straggler past the verdict.
pub const CAP: Duration = Duration::from_millis(1_000);

/// How long to wait for one EL once a verdict is available (`--straggler`, `#straggler=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Straggler {
    /// Adaptive: from the EL's own recent answer time, within [`FLOOR`] and [`CAP`].
    #[default]
    Auto,
    /// A fixed extra time past the verdict.
    Fixed(Duration),
    /// Always wait for this EL, up to its timeout (and never cut it for its health either).
    Wait,
}

impl FromStr for Straggler {
    type Err = String;

    fn from_str(text: &str) -> Result<Straggler, String> {
        match text.trim() {
            "auto" => Ok(Straggler::Auto),
            "wait" => Ok(Straggler::Wait),
            ms => ms
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms <= 7_500)
                .map(|ms| Straggler::Fixed(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    format!("straggler {ms:?} is not auto, wait or 0 to 7500 milliseconds")
                }),
        }
    }
}

impl Straggler {
    /// Until when (time since fan-out) a verdict available at `ready` waits for an EL whose
    /// state-changing calls typically take `typical`; `None`: wait for it.
    pub fn until(self, ready: Duration, typical: Option<Duration>) -> Option<Duration> {
        match self {
            Straggler::Wait => None,
            Straggler::Fixed(extra) => Some(ready + extra),
            Straggler::Auto => match typical {
                Some(usual) if usual > CAP => Some(ready),
                usual => {
                    let usual = usual.map_or(Duration::ZERO, |t| t * 2);
                    Some(usual.clamp(ready + FLOOR, ready + CAP))
                }
            },
        }
    }

    /// Whether this EL may be cut at once when its health shows it cannot answer in time.
    pub fn cuts_unhealthy(self) -> bool {
        self != Straggler::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn auto_waits_twice_the_usual_time_within_floor_and_cap() {
        let auto = Straggler::Auto;
        assert_eq!(
            auto.until(ms(50), None),
            Some(ms(250)),
            "no history: the floor"
        );
        assert_eq!(
            auto.until(ms(50), Some(ms(10))),
            Some(ms(250)),
            "fast EL: the floor"
        );
        assert_eq!(
            auto.until(ms(50), Some(ms(300))),
            Some(ms(600)),
            "slower EL: 2× its time"
        );
        assert_eq!(
            auto.until(ms(50), Some(ms(900))),
            Some(ms(1_050)),
            "slow EL: the cap"
        );
        assert_eq!(
            auto.until(ms(50), Some(ms(4_000))),
            Some(ms(50)),
            "never in time: cut when the others decide"
        );
        assert_eq!(
            auto.until(ms(50), Some(CAP)),
            Some(ms(1_050)),
            "at the cap: still waited for"
        );
        assert_eq!(
            Straggler::Fixed(ms(80)).until(ms(50), Some(ms(4_000))),
            Some(ms(130))
        );
        assert_eq!(Straggler::Wait.until(ms(50), Some(ms(1))), None);
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!("auto".parse(), Ok(Straggler::Auto));
        assert_eq!(" wait".parse(), Ok(Straggler::Wait));
        assert_eq!("350".parse(), Ok(Straggler::Fixed(ms(350))));
        assert!("9000".parse::<Straggler>().is_err());
        assert!("soon".parse::<Straggler>().is_err());
        assert!(!Straggler::Wait.cuts_unhealthy() && Straggler::Fixed(ms(0)).cuts_unhealthy());
    }
}
