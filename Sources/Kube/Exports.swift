// The client carries the model: `import Kube` gives both. Code that needs only objects, kinds, JSON and
// JSON patch (pure logic, its tests) imports `KubeModel` and links no HTTP stack.
@_exported import KubeModel
