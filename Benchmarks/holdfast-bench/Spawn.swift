import Foundation

/// Runs a program to completion and returns its exit status, waiting in `waitpid(2)`.
///
/// Not Foundation's `Process`: on Linux its `waitUntilExit()` polls the run loop every 50 ms, so
/// every timed child took ≥ 50 ms whatever it did (docs/platform.md). Output goes to /dev/null;
/// `stdin`, when given, is a file read as standard input.
func spawnAndWait(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, stdin: String? = nil) throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, stdin ?? "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
    defer { envp?.forEach { free($0) } }
    var child = pid_t()
    let spawned = envp.map { envp in posix_spawn(&child, executable, &actions, nil, argv, envp) } ?? posix_spawn(&child, executable, &actions, nil, argv, environ)
    guard spawned == 0 else { throw CocoaError(.executableLoad) }
    var status: Int32 = 0
    while waitpid(child, &status, 0) < 0 {
        guard errno == EINTR else { throw CocoaError(.executableLoad) }
    }
    // WIFEXITED / WEXITSTATUS; a signal counts as failure.
    return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
}
