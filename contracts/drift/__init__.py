"""Provider drift: what a provider now does differently from its spec, and spec-to-spec diffs.

Readers of the same specs as the mock, the client and the suites: recorded
conformance runs are compared with a spec (and an earlier run), one spec is
compared with another, and the providers are laid side by side.
"""
