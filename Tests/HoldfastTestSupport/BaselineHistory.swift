import FileWatch

/// Generated history for FileWatch's baselines: a user who writes `perHour` distinct files in
/// every hour of the last `weeks` weeks before `until` (milliseconds, an hour boundary), learned by
/// the same detector holdfastd runs and exported as `holdfast filewatch baseline import` reads it.
public enum BaselineHistory {
    public static func export(auid: UInt32, weeks: Int, perHour: Int, timeZone: String = "UTC", until: Int64, root: String) -> [UInt8] {
        var policy = FileWatchPolicy()
        policy.timeZone = timeZone
        var detector = FileWatchDetector(policy: policy)
        let hourMS: Int64 = 3_600_000
        let end = until - until % hourMS
        let start: Int64 = end - Int64(weeks) * 168 * hourMS
        var hour = start
        while hour < end {
            defer { hour += hourMS }
            for file in 0..<perHour {
                _ = detector.observe(FileActivity(
                    time: hour + Int64(file) * (hourMS / Int64(Swift.max(perHour, 1))), node: nil, serial: 0, auid: auid, userName: nil, uid: auid,
                    pid: 1, exe: "/usr/bin/cp", comm: "cp", operation: .create, path: root + "/history/\(hour)/\(file)", sourcePath: nil,
                    device: nil, target: .watchedRoot, key: nil
                ))
            }
        }
        return detector.snapshot.encoded()
    }
}
