enum _PlaceholderSnapshot {}
