//! Longest-prefix route matching over whole path segments.

use crate::config::Route;

/// The configured routes, longest prefix first, with the root route always present.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// `routes` as validated by config (sorted longest first, `/` included).
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// The index of the route for `path`: the longest prefix that ends at a segment boundary.
    pub fn find(&self, path: &str) -> usize {
        self.routes
            .iter()
            .position(|route| covers(&route.path, path))
            // Config always adds "/", which covers every path; the last route is the shortest.
            .unwrap_or(self.routes.len().saturating_sub(1))
    }

    /// The route at `index`.
    pub fn get(&self, index: usize) -> &Route {
        &self.routes[index.min(self.routes.len() - 1)]
    }

    /// Every route, in matching order.
    pub fn all(&self) -> &[Route] {
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
}
