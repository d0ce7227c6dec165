// Node-RED 4 settings for the side-by-side benchmark (scripts/bench_e2e.py, docs/BENCHMARKS.md).
// The bench installs node-red@4 and pg@8 with npm into .cache/nodered and starts
//   node .cache/nodered/node_modules/node-red/red.js --settings scripts/nodered/settings.js --userDir DIR
// with NODE_PATH=.cache/nodered/node_modules and the environment below:
//   NR_FLOW_FILE   the flow (scripts/nodered/flow.json, copied into DIR)
//   NR_PORT        the HTTP port (admin API only, for the bench to see that it is up)
//   MQTT_HOST, MQTT_PORT, PG_URL   read by the flow
// No editor, no projects, warnings only: what runs is the flow.
module.exports = {
    flowFile: process.env.NR_FLOW_FILE || "flow.json",
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.NR_PORT || "1880", 10),
    disableEditor: true,
    httpNodeRoot: false,
    credentialSecret: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { projects: { enabled: false } },
    // The function node reaches PostgreSQL through node-postgres (pg@8), given as a global
    // (node-red-contrib-postgresql is not in the registry this machine uses).
    functionGlobalContext: { pg: require("pg") },
    functionExternalModules: false,
};
