// Turns each dashboard JSON into a TypeScript module that declares it a `Dashboard` of
// @grafana/schema, so `tsc` checks every field against Grafana's published types (object
// literals: unknown fields and wrong types are errors).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dashboards = new URL("../grafana/dashboards/", import.meta.url).pathname;
const out = new URL("./gen/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
for (const file of readdirSync(dashboards).filter((f) => f.endsWith(".json"))) {
  const json = readFileSync(join(dashboards, file), "utf8");
  JSON.parse(json); // malformed JSON fails here, naming the file
  const name = file.replace(/\.json$/, "");
  writeFileSync(
    join(out, `${name}.ts`),
    `import type { Dashboard } from "@grafana/schema";\n\nexport const dashboard: Dashboard = ${json};\n`,
  );
  console.log(`typed ${file}`);
}
