package labbench

// ThisMachine describes the machine a benchmark runs on, for benchmarks
// outside this package that report alongside these.
func ThisMachine() Machine { return thisMachine() }
