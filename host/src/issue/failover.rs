//! The order in which an issuance tries a profile's CA accounts: the profile's own, except
//! that an account whose CA was just found unreachable goes last for a while (its gate knows,
//! [`crate::connector::gate`]). A dead primary CA then costs one request its connect timeout,
//! not every request and renewal of the profile until it is back; it is still tried when every
//! other account fails, so a profile never refuses to try an account it names.

use std::time::Duration;

/// `accounts` (a profile's active ones, in its order) in the order to try them, each with how
/// much longer it is tried last (`None`: in its place). Stable: accounts tried last keep their
/// order among themselves.
pub(crate) fn failover_order<A>(
    accounts: Vec<A>,
    tried_last: impl Fn(&A) -> Option<Duration>,
) -> Vec<(A, Option<Duration>)> {
    let alone = accounts.len() < 2;
    let mut order: Vec<(A, Option<Duration>)> = accounts
        .into_iter()
        .map(|a| {
            // Nobody else to try first: not even asked.
            let last = if alone { None } else { tried_last(&a) };
            (a, last)
        })
        .collect();
    order.sort_by_key(|(_, last)| last.is_some());
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(order: &[(&str, Option<Duration>)]) -> Vec<String> {
        order.iter().map(|(n, _)| (*n).to_owned()).collect()
    }

    #[test]
    fn an_account_found_unreachable_goes_last_and_the_rest_keep_their_order() {
        let accounts = || vec!["a", "b", "c", "d"];
        let down = |n: &&str| (*n == "a" || *n == "c").then_some(Duration::from_secs(10));
        assert_eq!(names(&failover_order(accounts(), down)), ["b", "d", "a", "c"]);
        assert_eq!(names(&failover_order(accounts(), |_| None)), ["a", "b", "c", "d"]);
        // All of them down: the profile's order.
        let all = |_: &&str| Some(Duration::from_secs(10));
        assert_eq!(names(&failover_order(accounts(), all)), ["a", "b", "c", "d"]);
        // One account: tried in any case, and not reported as tried last.
        assert_eq!(failover_order(vec!["a"], all), [("a", None)]);
    }
}
