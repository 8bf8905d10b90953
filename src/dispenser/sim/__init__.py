"""The laptop simulator (`dispenser simulate`).

- `identities`: synthetic identity templates calibrated on the real embedder's genuine and
  impostor similarity (no face images ship with the project).
- `scripted`: the built-in story: scripted visitors, a synthetic camera and the vision
  stand-in that turns its frames into real `Face` objects and synthetic templates.
- `live`: the real service, store and motor driver against the simulated controller on a
  pseudo-terminal, frame by frame on a virtual (or, for a webcam, the device) clock.
- `preview`: the camera frame with face boxes, hold-still progress and message, in a
  window or off-screen.
- `timeline`: the rows and the progress bar a terminal shows.
- `scenario`: crowd scenarios (built-in presets and the TOML format).
- `crowd`: hours of visitors through the real template store on a virtual clock.
- `report`: the crowd report (JSON, terminal table, PNG plots, self-contained HTML).

docs/simulator.md says which stages are real and which are simulated in each mode.
"""
