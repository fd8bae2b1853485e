import hashlib

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return HttpResponse("Hello from Django", content_type="text/plain")


def echo(request, word):
    return JsonResponse({"word": word, "path": request.path, "query": request.GET.dict()})


def form(request):
    if request.method == "POST":
        return HttpResponse(f"Thanks, {request.POST['name']}!", content_type="text/plain")
    return render(request, "form.html")


@csrf_exempt
def upload(request):
    uploaded = request.FILES["file"]
    data = uploaded.read()
    return JsonResponse(
        {
            "name": uploaded.name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "note": request.POST.get("note"),
        }
    )


def stream(request):
    def generate():
        for i in range(5):
            yield f"row {i}\n".encode()

    return StreamingHttpResponse(generate(), content_type="text/plain")
