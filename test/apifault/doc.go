// Package apifault holds what the API emulators (armisemu, netboxemu) share
// apart from the APIs themselves: the faults tests inject at run time and the
// plumbing that serves an emulator.
//
// An Injector holds one emulator's faults: added latency, 429 with
// Retry-After for the next K requests, a burst of K 5xx answers, and broken
// pages that always answer 500 or a truncated body. Its Admit runs first on
// every request and ServePage answers every page, so the faults apply the
// same way to every emulator; it also counts the answers it gives. What an
// answer looks like (Armis JSON errors, NetBox's HTML proxy pages and
// {"detail"} bodies) stays with each emulator, passed in as an API.
//
// A Host serves an emulator's handler on a loopback port over HTTP or HTTPS.
// WriteJSON and KeepFields are the response helpers both emulators render
// pages with.
//
// The sub-package ordinals holds the other shared half: the views, selection
// cache and seeded draws of inventories addressed by ordinal.
package apifault
