# The application: everything lives in the `app` package so that it is compiled to .mpy.
import app.main

app.main.start()
