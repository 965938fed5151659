package postgres

import "time"

// SetTestHook sets a function that sees every client message before the proxy does (nil:
// none). Not safe while sessions run.
func SetTestHook(f func(typ byte, body []byte)) { testHook = f }

// SetTestHookLocked sets a function that sees every client message with the session's
// queue lock held, and how to release it (nil: none). Not safe while sessions run.
func SetTestHookLocked(f func(typ byte, body []byte, unlock func())) { testHookLocked = f }

// SetStuckLoopWait sets how long a session waits for a loop blocked after an internal error.
func SetStuckLoopWait(d time.Duration) { stuckLoopWait = d }
