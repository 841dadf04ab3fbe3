extension Duration {
    /// The duration in seconds, fractions included (for reports and rates).
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
