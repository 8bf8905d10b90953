// Run a Python script under MicroPython (the WebAssembly port, same compiler and core as
// the RP2040 build) with the firmware's modules on its path:
//   node run_micropython.mjs SCRIPT.py MODULE.py...
// Each MODULE.py is copied into MicroPython's root filesystem under its base name, as
// `mpremote cp` puts it on the Pico. Exit status 1 if the script raises.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript/micropython.mjs";
import fs from "fs";
import path from "path";

const [script, ...modules] = process.argv.slice(2);
const mp = await loadMicroPython({
  stdout: (d) => process.stdout.write(d),
  stderr: (d) => process.stderr.write(d),
  linebuffer: false,
});
for (const m of modules) {
  mp.FS.writeFile("/" + path.basename(m), fs.readFileSync(m));
}
try {
  mp.runPython("import sys\nsys.path.insert(0, '/')\n" + fs.readFileSync(script, "utf8"));
} catch (e) {
  process.stderr.write(String(e) + "\n");
  process.exit(1);
}
