// The pure rules of application protection (what is captured, cleaned, restored in which order, transformed,
// confined; ProtectionError) come with the module that applies them: `import Protection` gives both.
@_exported import ProtectionRules
