// Validates every monitoring.coreos.com object of a rendered tree against the Prometheus
// Operator's schemas (@kubernetes-models/prometheus-operator: its CRDs compiled to validators);
// writes the other objects to stdout for kubernetes-validate. Fails on a kind it has no model for.
// usage: node validate.mjs <rendered.yaml> > <the rest.yaml>
import { readFileSync } from "node:fs";
import { parseAllDocuments, stringify } from "yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const models = { ServiceMonitor, PodMonitor, PrometheusRule };
const counts = {};
const rest = [];
let failed = false;
for (const doc of parseAllDocuments(readFileSync(process.argv[2], "utf8"))) {
  const object = doc.toJS();
  if (!object) continue;
  if (!String(object.apiVersion).startsWith("monitoring.coreos.com/")) {
    rest.push(stringify(object));
    continue;
  }
  const Model = models[object.kind];
  const name = `${object.kind}/${object.metadata?.name}`;
  if (!Model || object.apiVersion !== Model.apiVersion) {
    console.error(`k8s check: no schema for ${object.apiVersion} ${name}`);
    failed = true;
    continue;
  }
  try {
    new Model(object).validate();
    counts[object.kind] = (counts[object.kind] ?? 0) + 1;
  } catch (error) {
    console.error(`k8s check: ${name} is invalid: ${error.message}`);
    failed = true;
  }
}
process.stdout.write(rest.join("---\n"));
if (Object.keys(counts).length) console.error(`Prometheus Operator objects valid: ${JSON.stringify(counts)}`);
process.exit(failed ? 1 : 0);
