"""The laptop simulator (`dispenser simulate`).

- `identities`: synthetic identity templates calibrated on the real embedder's genuine and
  impostor similarity (no face images ship with the project).
- `scenario`: crowd scenarios (built-in presets and the TOML format).
- `crowd`: hours of visitors through the real template store on a virtual clock.
- `report`: the crowd report (JSON, terminal table, PNG plots, self-contained HTML).
- `live`: the real service, store and motor driver against the simulated controller on a
  pseudo-terminal, with scripted visitors or real frames (camera, video, images).

docs/simulator.md says which stages are real and which are simulated in each mode.
"""
