// Types of the Stemify HTTP API. They mirror the schemas of /openapi.yaml
// (Sources/StemifyServer/Public/openapi.yaml); a test fails when the two drift apart.
export {};
