//! Longest-prefix route matching over whole path segments.

use crate::config::Route;

/// The configured routes, longest prefix first, with the root route always present.
#[derive(Debug, Clone)]
pub(super) struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// `routes` as validated by config (sorted longest first, `/` included).
    pub(super) fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// The index of the route for `path`: the longest prefix that ends at a segment boundary.
    ///
    /// An application server that folds case (IIS, and others on Windows) serves `/ADMIN` as
    /// `/admin`; so when the exact match is a route without a certificate, a route that matches
    /// when case is ignored and needs one wins: of the two readings, the stricter decides.
    pub(super) fn find(&self, path: &str) -> usize {
        // Config always adds "/", which covers every path; the last route is the shortest.
        let last = self.routes.len().saturating_sub(1);
        let exact = self
            .routes
            .iter()
            .position(|route| covers(&route.path, path))
            .unwrap_or(last);
        if self.routes[exact].require_cert {
            return exact;
        }
        let folded = self
            .routes
            .iter()
            .position(|route| covers_ignoring_case(&route.path, path))
            .unwrap_or(last);
        if self.routes[folded].require_cert {
            folded
        } else {
            exact
        }
    }

    /// The route at `index`.
    pub(super) fn get(&self, index: usize) -> &Route {
        &self.routes[index.min(self.routes.len() - 1)]
    }

    /// Every route, in matching order.
    pub(super) fn all(&self) -> &[Route] {
        &self.routes
    }
}

fn covers(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn covers_ignoring_case(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        && path
            .get(prefix.len()..)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let route = |path: &str| Route {
            path: path.into(),
            require_cert: true,
        };
        Routes::new(vec![route("/public/deep"), route("/public"), route("/")])
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let routes = routes();
        assert_eq!(routes.find("/public/deep/x"), 0);
        assert_eq!(routes.find("/public/deeper"), 1);
        assert_eq!(routes.find("/public"), 1);
        assert_eq!(routes.find("/publicity"), 2);
        assert_eq!(routes.find("/"), 2);
        assert_eq!(routes.find("*"), 2);
    }

    #[test]
    fn a_case_folding_server_cannot_open_a_protected_route() {
        let route = |path: &str, require_cert| Route {
            path: path.into(),
            require_cert,
        };
        let routes = Routes::new(vec![route("/admin", true), route("/", false)]);
        assert_eq!(routes.find("/admin/x"), 0);
        assert_eq!(routes.find("/ADMIN/x"), 0, "the stricter reading wins");
        assert_eq!(routes.find("/Admin"), 0);
        assert_eq!(routes.find("/public"), 1);
        // The other way round, case does not open anything either.
        let routes = Routes::new(vec![route("/public", false), route("/", true)]);
        assert_eq!(routes.find("/PUBLIC"), 1);
        assert_eq!(routes.find("/public"), 0);
    }
}
