package postgres

// SetTestHook sets a function that sees every client message before the proxy does (nil:
// none). Not safe while sessions run.
func SetTestHook(f func(typ byte, body []byte)) { testHook = f }
