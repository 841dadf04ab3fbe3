/// The version of this program, recorded in snapshots.
public enum CairnVersion {
    public static let current = "0.1.0"
}
