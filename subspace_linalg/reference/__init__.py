"""Pure-torch reference implementations of every native op: the fallback on devices
without a native kernel and the second oracle of the tests (run in float64)."""
