# musket device application. Parts are wired together in app.main.
