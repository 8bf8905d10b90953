"""The screen in front of the visitor: what each message looks like, and where it is drawn.

`screens` is the table of screen states (one entry per message: its look, colour and
icon), `layout` places the guide, the text and the no-scan footer on a panel of any size,
`fonts` finds a font that covers every message, `painter` draws a state into a locked
RGB canvas and says which rectangles changed, `framebuffer` and `window` put those
rectangles on a panel, `screen` runs the drawing in its own thread behind a one-slot
mailbox so the service never waits for the screen, and `demo` writes a PNG of every state.
`dispenser.display.open.open_display` builds what `display.kind` asks for.
"""
