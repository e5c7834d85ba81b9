// Package resolving lets a store wrapper of this module tell store.Resolve
// its calls itself, instead of through the Go methods it has.
//
// A wrapper that keeps exactly the abilities of the store it wraps would
// otherwise need a type for each combination of them: two to the number
// of abilities (sixteen for Appender, Locker, Scanner and Purger). The
// fault-injection store (storetest/faultstore) has one type instead, with
// a method, ResolveCalls(Token) store.Calls, that store.Resolve asks
// first: the calls it returns have a nil func for each ability the
// wrapped store lacks, exactly as Resolve would have made them.
//
// Token lives here, in an internal package, so that only this module can
// name it, and so write that method: no store elsewhere takes this path by
// accident, or bypasses its own methods through it.
package resolving

// Token is the argument of ResolveCalls.
type Token struct{}
