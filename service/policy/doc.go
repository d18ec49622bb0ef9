// Package policy is the access policy of one API key: the restrictions parsed
// when the key is loaded (networks, countries, rate limit, quota), the bounded set
// of rate-limit buckets that outlives cache reloads (Limiters), the place check
// (CheckPlace: the client's network and country) and the spending of one use
// against the rate limit and the quota (Spend). It returns neutral outcomes (a
// Place, a Spent, an *Exhausted error); the key domain maps them into its
// verification and counters. Every use of a key applies it, by the key itself or
// by its delegates.
package policy
